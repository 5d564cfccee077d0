import { test } from "node:test";
import assert from "node:assert/strict";
import { Backoff, Freshness } from "../src/freshness.js";

test("the age needs no clock agreement: the smallest gap sets the offset", () => {
  const f = new Freshness();
  f.connected(0.5, 50);
  f.observe(100, 5000, 0); // (this clock reads 100 when the server's reads 5000)
  assert.equal(f.age(100), 0);
  f.observe(103, 5001, 0); // (a frame that waited 2 s: a larger gap, not a new offset)
  assert.equal(f.age(103), 2);
  assert.equal(f.age(104), 3);
});

test("a new connection's first frame sets offset and as_of anew; until then the age grows", () => {
  const f = new Freshness();
  f.connected(0.5, 0);
  f.observe(10, 1000, 0);
  assert.equal(f.age(12), 2); // (disconnected: still aging)
  f.connected(0.5, 12);
  assert.equal(f.age(13), 3);
  f.observe(13, 990, 0.5); // (a gateway behind the old server: its own clock and as_of)
  assert.equal(f.currentAsOf, 990);
  assert.equal(f.age(13), 0.5);
});

test("a v1 link has no age and is never dead by silence", () => {
  const f = new Freshness();
  f.connected(null, 0);
  assert.equal(f.age(5), null);
  assert.equal(f.dead(100), false);
  f.connected(0.5, 0);
  assert.equal(f.deadAfter, 2); // (3 intervals, at least 2 s)
  assert.equal(f.dead(1.9), false);
  assert.equal(f.dead(2.1), true);
});

test("backoff grows to its cap, with jitter", () => {
  const b = new Backoff(0.25, 10);
  assert.equal(b.delay(1, 0), 0.125);
  assert.equal(b.delay(3, 0.999999).toFixed(3), "1.000");
  assert.ok(b.delay(20, 0.5) <= 10);
});

test("a server clock stepped back is followed within 15 s; unbelievable times are ignored", () => {
  const f = new Freshness();
  f.connected(0.5, 0);
  for (let t = 0; t <= 10; t += 0.5) f.observe(t, 1000 + t, 0);
  assert.equal(f.age(10), 0);
  // the server's clock steps back 60 s: its frames now say as_of 60 s lower
  let age = 0;
  for (let t = 10.5; t <= 30; t += 0.5) {
    f.observe(t, 940 + t, 0);
    age = f.age(t) ?? -1;
  }
  assert.equal(age, 0); // (followed: not 60 s old for good)
  const before = f.age(30);
  f.observe(30, Number.NaN, 0);
  f.observe(30, 970, 1e9);
  f.observe(30, 970, -5);
  assert.equal(f.age(30), before);
});
