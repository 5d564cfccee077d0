// Random and near-valid frames fed to the client: nothing escapes as an exception, every view
// stays well-formed, and a valid snapshot afterwards brings the exact state back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../src/client.js";
import { FrameKind, SyncFlag, Status } from "../src/protocol.js";
import { Sockets, tick, until } from "./fake.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KINDS = Object.values(FrameKind) as number[];

function randomValue(r: () => number, depth = 0): unknown {
  const pick = Math.floor(r() * (depth > 2 ? 7 : 10));
  switch (pick) {
    case 0: return null;
    case 1: return Math.floor(r() * 10) - 2;
    case 2: return r() * 1e6;
    case 3: return "s".repeat(Math.floor(r() * 5));
    case 4: return r() < 0.5;
    case 5: return 2 ** 53 + Math.floor(r() * 10);
    case 6: return -1;
    case 7: return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    case 8: return Object.fromEntries(Array.from({ length: Math.floor(r() * 3) }, (_, i) => [String(i), randomValue(r, depth + 1)]));
    default: return [Math.floor(r() * 3), Math.floor(r() * 8), [[Math.floor(r() * 5), [r(), r()]]], [], []];
  }
}

function nearValidSync(r: () => number, seq: number): unknown[] {
  const upserts = Array.from({ length: Math.floor(r() * 4) }, () => {
    const entity = r() < 0.9 ? Math.floor(r() * 6) : randomValue(r);
    const values = r() < 0.7 ? [r(), r()] : r() < 0.5 ? { [String(Math.floor(r() * 3))]: r() } : randomValue(r);
    return r() < 0.95 ? [entity, values] : randomValue(r);
  });
  const group = [r() < 0.9 ? 1 : Math.floor(r() * 3), r() < 0.8 ? 0 : Math.floor(r() * 9), upserts, r() < 0.8 ? [] : [Math.floor(r() * 6)], r() < 0.9 ? [] : randomValue(r)];
  return [FrameKind.SYNC, r() < 0.95 ? seq : randomValue(r), r() < 0.95 ? [group] : randomValue(r), r() < 0.95 ? 1000 + seq : randomValue(r), 0];
}

for (const encoding of ["msgpack", "json"] as const) {
  test(`${encoding}: 3,000 random and near-valid frames: no exception escapes, state stays well-formed`, async () => {
    const escaped: unknown[] = [];
    const onError = (e: unknown): void => void escaped.push(e);
    process.on("uncaughtException", onError);
    process.on("unhandledRejection", onError);
    const warn = console.warn;
    console.warn = () => {};
    const sockets = new Sockets(encoding);
    const client = connect("ws://fuzz.test/", { webSocket: sockets.factory, encoding, commandTimeout: 0.05 });
    try {
      await tick();
      sockets.last.welcome();
      await client.ready(1);
      const view = client.components<{ x: number; y: number }>("Position");
      const r = rng(encoding === "json" ? 7 : 11);
      let seq = 1;
      for (let i = 0; i < 3000; i++) {
        const s = sockets.last;
        const roll = r();
        if (roll < 0.5) s.deliver(nearValidSync(r, seq++));
        else if (roll < 0.8) s.deliver([KINDS[Math.floor(r() * KINDS.length)], ...Array.from({ length: Math.floor(r() * 5) }, () => randomValue(r))]);
        else if (roll < 0.9) s.deliverRaw(encoding === "json" ? "[" + "x".repeat(Math.floor(r() * 4)) : new Uint8Array(Array.from({ length: Math.floor(r() * 8) }, () => Math.floor(r() * 256))).buffer);
        else if (roll < 0.95) s.deliver([FrameKind.REPLY, Math.floor(r() * 5), r() < 0.5 ? Status.OK : randomValue(r), randomValue(r), randomValue(r)]);
        else void client.request("X", {}).catch(() => {});
        if (i % 100 === 0) await tick(1);
      }
      await tick(20);
      for (const [entity, value] of view.map) {
        assert.ok(Number.isSafeInteger(entity) && entity >= 0, `entity ${entity}`);
        assert.deepEqual(Object.keys(value as object).sort(), ["x", "y"]);
      }
      assert.equal(client.state.value, "open");
      // a valid snapshot afterwards: exactly the server's state
      client.resync();
      sockets.last.deliver([FrameKind.SYNC, seq++, [[1, SyncFlag.SNAPSHOT | SyncFlag.COMPLETE, [[1, [1, 2]], [2, [3, 4]]], [], []]], 2000, 0]);
      await until(() => view.synced.value && view.map.size === 2);
      assert.deepEqual([...view.map.entries()].sort(), [[1, { x: 1, y: 2 }], [2, { x: 3, y: 4 }]]);
      assert.deepEqual(escaped, []);
    } finally {
      console.warn = warn;
      process.off("uncaughtException", onError);
      process.off("unhandledRejection", onError);
      client.close();
    }
  });
}
