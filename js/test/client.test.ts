import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Pl3xusClient } from "../src/client.js";
import { CommandTimeout, ConnectionLost, Forbidden, InvalidValue, MessageRejected, SchemaMismatch } from "../src/errors.js";
import type { ComponentType } from "../src/descriptors.js";
import { CloseCode, FrameKind, Status, SyncFlag } from "../src/protocol.js";
import { Sockets, tick, until } from "./fake.js";

interface Position {
  x: number;
  y: number;
}
const Position: ComponentType<Position> = { kind: "component", name: "Position", hash: "h0", fields: ["x", "y"] };
const COMPLETE = SyncFlag.SNAPSHOT | SyncFlag.COMPLETE;

function start(options: Parameters<typeof connect>[1] = {}, encoding: "msgpack" | "json" = "msgpack"): { client: Pl3xusClient; sockets: Sockets } {
  const sockets = new Sockets(encoding);
  const client = connect(["ws://a.test/", "ws://b.test/"], { webSocket: sockets.factory, encoding, backoff: { initial: 0.01, max: 0.05 }, ...options });
  return { client, sockets };
}

for (const encoding of ["msgpack", "json"] as const) {
  test(`${encoding}: subscribes after the welcome, applies SYNC, resolves a mutation after the value shows`, async () => {
    const { client, sockets } = start({}, encoding);
    await tick();
    const s = sockets.last;
    assert.deepEqual(s.protocols, encoding === "json" ? ["pl3xus.json.v2", "pl3xus.json.v1"] : ["pl3xus.msgpack.v2", "pl3xus.msgpack.v1"]);
    const view = client.components(Position);
    assert.equal(s.sent.length, 0); // (nothing before the welcome)
    s.welcome();
    await client.ready(1);
    const [sub] = s.sentOf(FrameKind.SUBSCRIBE);
    assert.deepEqual(sub, [FrameKind.SUBSCRIBE, 1, "Position", null, {}]);
    s.deliver([FrameKind.SYNC, 1, [[1, COMPLETE, [[1, [1, 2]]], [], []]], 1000, 0]);
    await until(() => view.map.size === 1);
    assert.equal(client.stale.value, false);
    const done = client.mutate(Position, 1, { x: 5, y: 6 });
    const [m] = s.sentOf(FrameKind.MUTATE);
    assert.deepEqual(m, [FrameKind.MUTATE, 1, "Position", 1, { x: 5, y: 6 }]);
    let shownAtResolve: unknown;
    const watched = done.then(() => (shownAtResolve = view.map.get(1)));
    s.deliver([FrameKind.SYNC, 2, [[1, 0, [[1, [5, 6]]], [], []]], 1000.1, 0]);
    s.deliver([FrameKind.REPLY, 1, Status.OK, "", {}]);
    await watched;
    assert.deepEqual(shownAtResolve, { x: 5, y: 6 });
    client.close();
  });
}

test("refusals are typed, with the field errors; a timeout and a lost connection settle too", async () => {
  const { client, sockets } = start({ commandTimeout: 0.05 });
  await tick();
  sockets.last.welcome();
  await client.ready(1);
  const s = sockets.last;
  const a = client.mutate(Position, 1, { x: 1, y: 1 });
  const b = client.request("Jog", { dx: 1 }, { entity: 2 });
  s.deliver([FrameKind.REPLY, 1, Status.FORBIDDEN, "entity 1 is controlled by connection 2", {}]);
  s.deliver([FrameKind.REPLY, 2, Status.VALIDATION_ERROR, "bad", { errors: [{ loc: "dx", msg: "too big", type: "less_than" }] }]);
  await assert.rejects(a, (e: unknown) => e instanceof Forbidden && e.reason.includes("controlled"));
  await assert.rejects(b, (e: unknown) => e instanceof InvalidValue && e.errors[0]?.loc === "dx");
  await assert.rejects(client.takeControl(3), CommandTimeout);
  const lost = client.despawn(4);
  s.drop(1006);
  await assert.rejects(lost, ConnectionLost);
  await assert.rejects(client.fetch("Q", {}), ConnectionLost); // (not connected now)
  client.close();
});

test("a sequence gap asks for fresh snapshots; v2 frames are acknowledged", async () => {
  const { client, sockets } = start();
  await tick();
  sockets.last.welcome();
  await client.ready(1);
  const s = sockets.last;
  client.components(Position);
  s.deliver([FrameKind.SYNC, 1, [[1, COMPLETE, [[1, [1, 2]]], [], []]], 1000, 0]);
  s.deliver([FrameKind.SYNC, 2, [], 1000.1, 0]);
  await tick(20);
  assert.deepEqual(s.sentOf(FrameKind.ACK), [[FrameKind.ACK, 2]]); // (two frames in one pass: at once)
  s.deliver([FrameKind.SYNC, 5, [], 1000.2, 0]);
  await tick(150);
  assert.deepEqual(s.sentOf(FrameKind.RESYNC), [[FrameKind.RESYNC, null]]);
  assert.deepEqual(s.sentOf(FrameKind.ACK).at(-1), [FrameKind.ACK, 5]); // (one frame: within 0.1 s)
  client.close();
});

test("a v1 server: SYNC of three elements, no ACKs, no age", async () => {
  const { client, sockets } = start();
  await tick();
  sockets.last.welcome({}, 1);
  await client.ready(1);
  const view = client.components(Position);
  sockets.last.deliver([FrameKind.SYNC, 1, [[1, COMPLETE, [[3, [1, 2]]], [], []]]]);
  await until(() => view.map.size === 1);
  await tick(150);
  assert.equal(sockets.last.sentOf(FrameKind.ACK).length, 0);
  assert.equal(client.age.value, null);
  client.close();
});

test("a lost connection reconnects, subscribes again and reconciles; 4004 moves to the next URL at once", async () => {
  const { client, sockets } = start();
  await tick();
  sockets.last.welcome();
  await client.ready(1);
  const view = client.components(Position);
  sockets.last.deliver([FrameKind.SYNC, 1, [[1, COMPLETE, [[1, [1, 1]], [2, [2, 2]]], [], []]], 1000, 0]);
  await until(() => view.map.size === 2);
  sockets.last.drop(1006);
  assert.equal(client.state.value, "reconnecting");
  assert.equal(client.stale.value, true);
  assert.equal(view.map.size, 2); // (values kept while reconnecting)
  await until(() => sockets.all.length === 2);
  assert.equal(sockets.last.url, "ws://a.test/"); // (it was open: the same URL first)
  sockets.last.welcome();
  await client.ready(1);
  assert.equal(sockets.last.sentOf(FrameKind.SUBSCRIBE).length, 1);
  sockets.last.deliver([FrameKind.SYNC, 1, [[1, COMPLETE, [[2, [20, 20]]], [], []]], 1001, 0]);
  await until(() => view.map.size === 1);
  assert.deepEqual(view.map.get(2), { x: 20, y: 20 });
  const before = Date.now();
  sockets.last.drop(CloseCode.MOVED, "draining");
  await until(() => sockets.all.length === 3);
  assert.ok(Date.now() - before < 50);
  assert.equal(sockets.last.url, "ws://b.test/");
  client.close();
  assert.equal(client.state.value, "closed");
});

test("a token goes in the query; a token callable is asked at each connection", async () => {
  let n = 0;
  const { client, sockets } = start({ token: () => `t${++n}` });
  await until(() => sockets.all.length === 1);
  assert.equal(new URL(sockets.last.url).searchParams.get("token"), "t1");
  sockets.last.drop(1006);
  await until(() => sockets.all.length === 2);
  assert.equal(new URL(sockets.last.url).searchParams.get("token"), "t2");
  client.close();
});

test("schema mismatches are reported by field name; a type the server lacks leaves its view empty", async () => {
  const Speed: ComponentType<{ value: number }> = { kind: "component", name: "Speed", hash: "s", fields: ["value"] };
  const Old: ComponentType<Position> = { kind: "component", name: "Position", hash: "old", fields: ["x", "z"] };
  const { client, sockets } = start({ schema: { components: [Old, Speed] } });
  await tick();
  const errors: string[] = [];
  const { effect } = await import("@preact/signals-core");
  const stop = effect(() => {
    const e = client.error.value;
    if (e !== null) errors.push(e.message);
  });
  const original = console.warn;
  console.warn = () => {};
  try {
    sockets.last.welcome();
    await client.ready(1);
    const speed = client.components(Speed);
    assert.ok(errors.some((m) => m.includes("Position") && m.includes("+y") && m.includes("-z")), errors.join("\n"));
    assert.ok(errors.some((m) => m.includes("Speed")));
    assert.notEqual(speed.refused.value, null);
    assert.equal(sockets.last.sentOf(FrameKind.SUBSCRIBE).length, 0);
    assert.ok(client.error.value instanceof SchemaMismatch);
  } finally {
    console.warn = original;
    stop();
    client.close();
  }
});

test("queries refetch on INVALIDATE with matching keys; notices reach the notification list and the error signal", async () => {
  const { client, sockets } = start();
  await tick();
  sockets.last.welcome();
  await client.ready(1);
  const s = sockets.last;
  const q = client.query<{ page: number }, string[]>("Programs", { page: 1 });
  const [ask] = s.sentOf(FrameKind.QUERY);
  assert.deepEqual(ask, [FrameKind.QUERY, 1, "Programs", { page: 1 }]);
  s.deliver([FrameKind.REPLY, 1, Status.OK, "", { value: ["a"] }]);
  await until(() => q.state.value.status === Status.OK);
  assert.deepEqual(q.state.value.value, ["a"]);
  s.deliver([FrameKind.INVALIDATE, "Programs", [{ page: 2 }]]);
  await tick(10);
  assert.equal(s.sentOf(FrameKind.QUERY).length, 1); // (another page)
  s.deliver([FrameKind.INVALIDATE, "Programs", [{ page: 1 }]]);
  await until(() => s.sentOf(FrameKind.QUERY).length === 2);
  s.deliver([FrameKind.REPLY, 2, Status.OK, "", { value: ["a", "b"] }]);
  await until(() => (q.state.value.value ?? []).length === 2);
  s.deliver([FrameKind.NOTICE, "notification", { level: "warning", text: "hot", context: { t: 1 } }]);
  s.deliver([FrameKind.NOTICE, "message_rejected", { type: "Chat", entity: null, status: "forbidden", reason: "no" }]);
  await until(() => client.notifications.value.length === 1);
  assert.equal(client.notifications.value[0]?.text, "hot");
  assert.ok(client.error.value instanceof MessageRejected);
  q.close();
  client.close();
});

test("frames the client cannot read are reported once per kind, and the connection stays usable", async () => {
  const { client, sockets } = start();
  await tick();
  sockets.last.welcome();
  await client.ready(1);
  const s = sockets.last;
  const view = client.components(Position);
  const warned: string[] = [];
  const original = console.warn;
  console.warn = (m: string) => warned.push(m);
  try {
    s.deliverRaw("text on a msgpack link");
    s.deliver([FrameKind.SYNC, 1, "not groups", 1, 0]);
    s.deliver([FrameKind.SYNC, 2, [[1, 0, [["x", [1]]], [], []]], 1, 0]);
    s.deliver([99, "?"]);
    s.deliver([99, "?"]);
    await tick(10);
    assert.equal(client.badFrames.get("unknown_kind"), 2);
    assert.equal(warned.filter((w) => w.includes("unknown_kind")).length, 1);
    assert.equal(warned.filter((w) => w.includes("kind 5")).length, 1);
    s.deliver([FrameKind.SYNC, 3, [[1, COMPLETE, [[1, [1, 2]]], [], []]], 1, 0]);
    await until(() => view.map.size === 1);
  } finally {
    console.warn = original;
    client.close();
  }
});

test("entity ids near 2^52 round-trip exactly through both encodings", async () => {
  for (const encoding of ["msgpack", "json"] as const) {
    const { client, sockets } = start({}, encoding);
    await tick();
    sockets.last.welcome();
    await client.ready(1);
    const big = 2 ** 52 + 7;
    const view = client.components(Position);
    sockets.last.deliver([FrameKind.SYNC, 1, [[1, COMPLETE, [[big, [1, 2]]], [], []]], 1, 0]);
    await until(() => view.map.size === 1);
    assert.ok(view.map.has(big));
    void client.mutate(Position, big, { x: 0, y: 0 }).catch(() => {});
    assert.equal(sockets.last.sentOf(FrameKind.MUTATE)[0]?.[3], big);
    client.close();
  }
});

test("a v2 link that falls silent is dropped and reconnected; the age grows and turns stale", async () => {
  let now = 1000;
  const { client, sockets } = start({ now: () => now, staleAfter: 1 });
  await tick();
  sockets.last.welcome({ as_of_interval: 0.5 });
  await client.ready(1);
  client.components(Position);
  sockets.last.deliver([FrameKind.SYNC, 1, [[1, COMPLETE, [], [], []]], 999.9, 0.1]);
  await tick(300);
  assert.ok((client.age.value ?? 99) < 0.5);
  now += 1.5;
  sockets.last.deliver([FrameKind.BEACON, 1, 999.9, 1.6]); // (the server says: nothing newer)
  await until(() => client.stale.value === true, 1000);
  now += 3;
  await until(() => sockets.all.length === 2, 2000);
  client.close();
});

test("entity() and controlledBy() share one subscription of the type, however often called", async () => {
  const { client, sockets } = start();
  await tick();
  sockets.last.welcome();
  await client.ready(1);
  for (let i = 0; i < 50; i++) {
    client.entity(Position, 1);
    client.controlledBy(i);
  }
  const view = client.components(Position);
  client.release(view); // (the explicit use ends; the entity signals' one stays)
  assert.equal(sockets.last.sentOf(FrameKind.SUBSCRIBE).length, 2); // Position, EntityControl
  assert.equal(sockets.last.sentOf(FrameKind.UNSUBSCRIBE).length, 0);
  client.close();
});

test("a token callable refreshes the credential in band before it expires", async () => {
  let n = 0;
  const { client, sockets } = start({ token: () => `t${++n}` });
  await until(() => sockets.all.length === 1);
  sockets.last.welcome({ refresh: true, expires_in: 0.2 });
  await client.ready(1);
  await until(() => sockets.last.sentOf(FrameKind.REFRESH).length === 1, 1000);
  const [frame] = sockets.last.sentOf(FrameKind.REFRESH);
  assert.equal(frame?.[2], "t2");
  sockets.last.deliver([FrameKind.REPLY, frame?.[1], Status.OK, "", { expires_in: 60 }]);
  await tick(20);
  assert.equal(sockets.all.length, 1); // (no reconnect)
  client.close();
});

test("an effect or a listener of the application that throws stops neither answers nor ACKs", async () => {
  const { client, sockets } = start();
  await tick();
  sockets.last.welcome();
  await client.ready(1);
  const s = sockets.last;
  const view = client.components(Position);
  const { effect } = await import("@preact/signals-core");
  const quiet = console.error;
  console.error = () => {};
  const stop = effect(() => {
    if (view.version.value > 0) throw new Error("the app's bug");
  });
  client.onNotice(() => {
    throw new Error("the app's other bug");
  });
  try {
    const answers = [client.fetch("Q", {}), client.fetch("Q", {})];
    s.deliver([FrameKind.SYNC, 1, [[1, COMPLETE, [[1, [1, 2]]], [], []]], 1, 0]);
    s.deliver([FrameKind.NOTICE, "notification", { level: "info", text: "x", context: {} }]);
    s.deliver([FrameKind.REPLY, 1, Status.OK, "", { value: 1 }]);
    s.deliver([FrameKind.REPLY, 2, Status.OK, "", { value: 2 }]);
    assert.deepEqual(await Promise.all(answers), [1, 2]);
    await tick(150);
    assert.deepEqual(s.sentOf(FrameKind.ACK).at(-1), [FrameKind.ACK, 1]);
  } finally {
    stop();
    console.error = quiet;
    client.close();
  }
});

test("a WELCOME the client cannot read, or none at all, moves on to the next URL", async () => {
  const quiet = console.warn;
  console.warn = () => {};
  const { client, sockets } = start({ commandTimeout: 0.05 });
  try {
    await tick();
    const weird = { toString: 1 };
    sockets.last.deliver([FrameKind.WELCOME, { version: 2, connection_id: 1, identity: { name: weird, roles: [weird] }, components: [[0, weird, "h", ["x"]], [1, "P", "h", 5]] }]);
    // (read without throwing: the odd rows are left out)
    await client.ready(1);
    assert.equal(client.welcome.value?.identity.name, "anonymous");
    assert.equal(client.welcome.value?.components.length, 0);
    sockets.last.drop(1006);
    await until(() => sockets.all.length === 2);
    // it was open, so the same URL first; that server accepts and never says a word: after
    // the limit (2 s at least), the next URL
    assert.equal(sockets.last.url, "ws://a.test/");
    await until(() => sockets.all.length === 3, 4000);
    assert.equal(sockets.last.url, "ws://b.test/");
  } finally {
    console.warn = quiet;
    client.close();
  }
});

test("a credential valid for months is refreshed once, not in a loop", async () => {
  let asked = 0;
  const { client, sockets } = start({ token: () => `t${++asked}` });
  await until(() => sockets.all.length === 1);
  sockets.last.welcome({ refresh: true, expires_in: 60 * 86_400 });
  await client.ready(1);
  await tick(100);
  assert.equal(sockets.last.sentOf(FrameKind.REFRESH).length, 0);
  assert.equal(asked, 1);
  client.close();
});

test("a URL that is not one, with a token, is reported and retried, never an unhandled rejection", async () => {
  const escaped: unknown[] = [];
  const onError = (e: unknown): void => void escaped.push(e);
  process.on("unhandledRejection", onError);
  const quiet = console.warn;
  console.warn = () => {};
  const sockets = new Sockets();
  const client = connect("not a url", { webSocket: sockets.factory, token: "t", backoff: { initial: 0.01, max: 0.02 } });
  try {
    await tick(50);
    assert.deepEqual(escaped, []);
    assert.equal(sockets.all.length, 0);
    assert.match(client.error.value?.message ?? "", /cannot open not a url/);
  } finally {
    console.warn = quiet;
    process.off("unhandledRejection", onError);
    client.close();
  }
});

test("history: the past in parts, then live values on the same signal; a refusal is typed", async () => {
  const { client, sockets } = start();
  await tick();
  sockets.last.welcome({ history: { Position: { seconds: 600, fields: ["x", "y"] } } });
  await client.ready(1);
  const s = sockets.last;
  const trend = client.history<number>(Position, 1, "x", { seconds: 600 });
  const [sub] = s.sentOf(FrameKind.SUBSCRIBE);
  assert.deepEqual(sub, [FrameKind.SUBSCRIBE, 1, "Position", 1, {}]);
  const [first] = s.sentOf(FrameKind.QUERY);
  assert.deepEqual(first, [FrameKind.QUERY, 1, "pl3xus.history", { type: "Position", entity: 1, field: "x", seconds: 600 }]);
  // the live snapshot comes while the past is on its way
  s.deliver([FrameKind.SYNC, 1, [[1, COMPLETE, [[1, [3, 0]]], [], []]], 1000, 0]);
  const part = { type: "Position", fields: ["x"], whole: false, since: 400, kept_since: 900, cut_by_budget: false };
  s.deliver([FrameKind.REPLY, 1, Status.OK, "", { value: { ...part, until: 1000, series: [[1, [990, 995], [1, 2]]], cursor: [400, 1000, 1, 995] } }]);
  await until(() => s.sentOf(FrameKind.QUERY).length === 2);
  const second = s.sentOf(FrameKind.QUERY)[1] as unknown[];
  assert.deepEqual((second[3] as Record<string, unknown>)["cursor"], [400, 1000, 1, 995]);
  s.deliver([FrameKind.REPLY, 2, Status.OK, "", { value: { ...part, until: 1000, series: [[1, [1000], [3]]], cursor: null } }]);
  await until(() => trend.points.value.length === 3);
  assert.deepEqual(trend.points.value, [[990, 1], [995, 2], [1000, 3]]);
  s.deliver([FrameKind.SYNC, 2, [[1, 0, [[1, [9, 0]]], [], []]], 1001, 0]);
  await until(() => trend.points.value.length === 4);
  assert.deepEqual(trend.points.value[3], [1001, 9]);
  assert.equal(trend.error.value, null);
  trend.close();
  assert.equal(s.sentOf(FrameKind.UNSUBSCRIBE).length, 1);
  // whole values come as objects
  const whole = client.fetchHistory(Position, 2);
  s.deliver([FrameKind.REPLY, 3, Status.OK, "", { value: { ...part, fields: ["x", "y"], whole: true, until: 5, series: [[2, [5], [[1, 2]]]], cursor: null } }]);
  assert.deepEqual(await whole, [[5, { x: 1, y: 2 }]]);
  const refused = client.fetchHistory(Position, 1, "nope");
  s.deliver([FrameKind.REPLY, 4, Status.VALIDATION_ERROR, 'pl3xus.history: Position keeps no history of field "nope"', { errors: [{ loc: "field", msg: "no", type: "value_error" }] }]);
  await assert.rejects(refused, InvalidValue);
  client.close();
});
