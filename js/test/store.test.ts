import { test } from "node:test";
import assert from "node:assert/strict";
import { effect } from "@preact/signals-core";
import { View, applyGroups, parseGroups } from "../src/store.js";
import { SyncFlag } from "../src/protocol.js";

const SNAP = SyncFlag.SNAPSHOT;
const COMPLETE = SyncFlag.SNAPSHOT | SyncFlag.COMPLETE;
const CONT = SyncFlag.CONTINUED;

function view(): { v: View<{ x: number; y: number }>; views: Map<number, View<unknown>> } {
  const v = new View<{ x: number; y: number }>("Position", null);
  v.setFields(["x", "y"]);
  return { v, views: new Map([[1, v as View<unknown>]]) };
}

function apply(views: Map<number, View<unknown>>, groups: unknown): void {
  for (const touched of applyGroups(parseGroups(groups), views)) touched.flush();
}

test("a complete snapshot fills the view, names fields by the welcome, and marks it synced", () => {
  const { v, views } = view();
  apply(views, [[1, COMPLETE, [[1, [1.5, 2]], [2, [3, 4]]], [], []]]);
  assert.deepEqual(v.map.get(1), { x: 1.5, y: 2 });
  assert.equal(v.map.size, 2);
  assert.equal(v.synced.value, true);
});

test("removals, upserts and despawns apply in that order; the version moves once per frame", () => {
  const { v, views } = view();
  apply(views, [[1, COMPLETE, [[1, [1, 1]], [2, [2, 2]]], [], []]]);
  const seen: number[] = [];
  const stop = effect(() => void seen.push(v.version.value));
  apply(views, [[1, 0, [[1, [9, 9]], [3, [3, 3]]], [1], [2]]]);
  stop();
  assert.deepEqual([...v.map.entries()], [[1, { x: 9, y: 9 }], [3, { x: 3, y: 3 }]]);
  assert.equal(seen.length, 2); // (the first run, then one per frame)
});

test("a snapshot in parts removes, at its end, what the server no longer has", () => {
  const { v, views } = view();
  apply(views, [[1, COMPLETE, [[1, [1, 1]], [2, [2, 2]], [3, [3, 3]]], [], []]]);
  apply(views, [[1, SNAP, [[1, [1, 1]]], [], []]]); // a resync begins
  assert.equal(v.synced.value, false);
  apply(views, [[1, 0, [[3, [30, 30]]], [], []]]); // a live upsert crosses 3 off
  apply(views, [[1, COMPLETE | CONT, [], [], []]]);
  assert.deepEqual([...v.map.keys()].sort(), [1, 3]);
  assert.equal(v.synced.value, true);
});

test("field deltas merge onto the held value; a delta for an unknown entity changes nothing", () => {
  const { v, views } = view();
  apply(views, [[1, COMPLETE, [[1, [1, 1]]], [], []]]);
  apply(views, [[1, 0, [[1, { "1": 5 }]], [], []]]);
  assert.deepEqual(v.map.get(1), { x: 1, y: 5 });
  assert.throws(() => apply(views, [[1, 0, [[1, { "0": 7 }], [2, { "0": 1 }]], [], []]]), /does not hold/);
  assert.deepEqual(v.map.get(1), { x: 1, y: 5 }); // (the whole frame refused, nothing applied)
});

test("per-entity signals follow only their entity; where() filters", () => {
  const { v, views } = view();
  apply(views, [[1, COMPLETE, [[1, [1, 1]], [2, [2, 2]]], [], []]]);
  const one = v.get(1);
  const big = v.where((p) => p.x > 1);
  let runs = 0;
  const stop = effect(() => {
    void one.value;
    runs += 1;
  });
  apply(views, [[1, 0, [[2, [5, 5]]], [], []]]);
  assert.equal(runs, 1); // entity 2 changed, not 1
  apply(views, [[1, 0, [[1, [7, 7]]], [], []]]);
  assert.equal(runs, 2);
  assert.deepEqual(one.value, { x: 7, y: 7 });
  assert.deepEqual([...big.value.keys()].sort(), [1, 2]);
  apply(views, [[1, 0, [], [], [1]]]);
  assert.equal(one.value, undefined);
  stop();
});

test("ids up to 2^53 - 1 round-trip; larger or negative ones are refused", () => {
  const { v, views } = view();
  const big = 2 ** 52 + 12345;
  apply(views, [[1, COMPLETE, [[big, [1, 2]], [Number.MAX_SAFE_INTEGER, [3, 4]]], [], []]]);
  assert.deepEqual(v.map.get(big), { x: 1, y: 2 });
  assert.ok(v.map.has(Number.MAX_SAFE_INTEGER));
  assert.throws(() => apply(views, [[1, 0, [[2 ** 53 + 2, [1, 2]]], [], []]]), /not \[entity, values\]/);
  assert.throws(() => apply(views, [[1, 0, [[1, "x"]], [], []]]), /not \[entity, values\]/);
  assert.throws(() => parseGroups([[1, 0, [], [-1], []]]), /not an entity id/);
});

test("within one frame, a delta builds on an earlier group's value, never on a removed one", () => {
  const { v, views } = view();
  apply(views, [[1, COMPLETE, [[1, [1, 1]]], [], []]]);
  apply(views, [[1, 0, [[1, [2, 2]]], [], []], [1, 0, [[1, { "0": 9 }]], [], []]]);
  assert.deepEqual(v.map.get(1), { x: 9, y: 2 });
  assert.throws(() => apply(views, [[1, 0, [], [1], []], [1, 0, [[1, { "0": 5 }]], [], []]]), /does not hold/);
  assert.deepEqual(v.map.get(1), { x: 9, y: 2 });
});

test("changes reach listeners once per frame, with the previous value", () => {
  const { v, views } = view();
  const got: unknown[] = [];
  v.onChanges((changes) => got.push(changes.map((c) => [c.kind, c.entity])));
  apply(views, [[1, COMPLETE, [[1, [1, 1]]], [], []]]);
  apply(views, [[1, 0, [[1, [2, 2]]], [], [1]]]);
  assert.deepEqual(got, [[["upserted", 1]], [["upserted", 1], ["despawned", 1]]]);
});

test("a field named __proto__ is a plain property, never the value's prototype", () => {
  const v = new View<Record<string, unknown>>("Evil", null);
  v.setFields(["__proto__", "x"]);
  const views = new Map([[1, v as View<unknown>]]);
  apply(views, [[1, COMPLETE, [[1, [{ isAdmin: true }, 1]]], [], []]]);
  const value = v.map.get(1) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(value), Object.prototype);
  assert.equal((value as { isAdmin?: boolean }).isAdmin, undefined);
  assert.deepEqual(Object.keys(value), ["__proto__", "x"]);
  apply(views, [[1, 0, [[1, { "0": { isAdmin: true } }]], [], []]]);
  assert.equal(Object.getPrototypeOf(v.map.get(1)), Object.prototype);
});
