/**
 * What the client holds of the server's components: one {@link View} per subscription, fed
 * SYNC groups. No I/O here; the client shell decodes frames and hands the groups in.
 *
 * A view is a mutable `Map` plus a `version` signal bumped once per frame that changed it, and
 * per-entity signals made on demand, so applying a frame costs what it changed, never a copy
 * of the whole map (docs/web.md, "How the store scales").
 */
import { computed, signal, type ReadonlySignal, type Signal } from "@preact/signals-core";
import { ProtocolError } from "./errors.js";
import { FrameKind, SyncFlag } from "./protocol.js";

/** The largest entity or connection id that round-trips exactly (2^53 − 1). */
export const MAX_ID = Number.MAX_SAFE_INTEGER;

/** One change a frame made to a view. */
export type Change<T> =
  | { readonly kind: "upserted"; readonly entity: number; readonly value: T; readonly previous: T | undefined }
  | { readonly kind: "removed"; readonly entity: number; readonly previous: T }
  | { readonly kind: "despawned"; readonly entity: number; readonly previous: T };

/** A SYNC group, checked: `[sub_id, flags, upserts, removals, despawns]`. */
export interface Group {
  readonly sub: number;
  readonly flags: number;
  /** `[entity, values]` items, unchecked until decoded. */
  readonly upserts: readonly unknown[];
  readonly removals: readonly number[];
  readonly despawns: readonly number[];
}

function isId(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_ID;
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function ids(value: unknown, what: string): number[] {
  if (!Array.isArray(value)) throw new ProtocolError(`SYNC group: ${what} is not an array`, FrameKind.SYNC);
  for (const id of value) {
    if (!isId(id)) throw new ProtocolError(`SYNC group: ${what} holds ${describe(id)}, not an entity id`, FrameKind.SYNC);
  }
  return value as number[];
}

/** A short description of a value from the wire, for error messages (never the whole value). */
export function describe(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

/** Checks a SYNC frame's groups (their upserts are checked as they are decoded, in
 * {@link applyGroups}); throws {@link ProtocolError} naming what is wrong. */
export function parseGroups(raw: unknown): Group[] {
  if (!Array.isArray(raw)) throw new ProtocolError("SYNC: the groups are not an array", FrameKind.SYNC);
  const groups: Group[] = [];
  for (const g of raw) {
    if (!Array.isArray(g) || g.length !== 5) throw new ProtocolError(`SYNC: a group is not [sub, flags, upserts, removals, despawns]: ${describe(g)}`, FrameKind.SYNC);
    const [sub, flags, upserts, removals, despawns] = g as unknown[];
    if (!Number.isInteger(sub)) throw new ProtocolError(`SYNC group: sub_id ${describe(sub)} is not an integer`, FrameKind.SYNC);
    if (!Number.isInteger(flags) || (flags as number) < 0 || (flags as number) > 7) throw new ProtocolError(`SYNC group: flags ${describe(flags)} are not 0-7`, FrameKind.SYNC);
    if (!Array.isArray(upserts)) throw new ProtocolError("SYNC group: upserts are not an array", FrameKind.SYNC);
    // (each upsert is checked as it is decoded: applyGroups)
    groups.push({
      sub: sub as number,
      flags: flags as number,
      upserts,
      removals: ids(removals, "removals"),
      despawns: ids(despawns, "despawns"),
    });
  }
  return groups;
}

/**
 * Makes the function that turns a component's values, in wire order, into an object keyed by
 * field name. Small types get an unrolled function (each property stored at its own site, so
 * the engine keeps one object shape per type: some 5 times faster than a loop over the names).
 */
export function valueBuilder(fields: readonly string[]): (raw: readonly unknown[]) => Record<string, unknown> {
  if (fields.includes("__proto__")) {
    // (assigning "__proto__" would set the value's prototype: a field of that name, which no
    // pydantic model has but a hostile server may announce, is defined as a plain property)
    return (r) => {
      const o: Record<string, unknown> = {};
      fields.forEach((name, i) => setField(o, name, r[i]));
      return o;
    };
  }
  const [a, b, c, d, e, f] = fields as string[];
  switch (fields.length) {
    case 0:
      return () => ({});
    case 1:
      return (r) => ({ [a as string]: r[0] });
    case 2:
      return (r) => {
        const o: Record<string, unknown> = {};
        o[a as string] = r[0];
        o[b as string] = r[1];
        return o;
      };
    case 3:
      return (r) => {
        const o: Record<string, unknown> = {};
        o[a as string] = r[0];
        o[b as string] = r[1];
        o[c as string] = r[2];
        return o;
      };
    case 4:
      return (r) => {
        const o: Record<string, unknown> = {};
        o[a as string] = r[0];
        o[b as string] = r[1];
        o[c as string] = r[2];
        o[d as string] = r[3];
        return o;
      };
    case 5:
      return (r) => {
        const o: Record<string, unknown> = {};
        o[a as string] = r[0];
        o[b as string] = r[1];
        o[c as string] = r[2];
        o[d as string] = r[3];
        o[e as string] = r[4];
        return o;
      };
    case 6:
      return (r) => {
        const o: Record<string, unknown> = {};
        o[a as string] = r[0];
        o[b as string] = r[1];
        o[c as string] = r[2];
        o[d as string] = r[3];
        o[e as string] = r[4];
        o[f as string] = r[5];
        return o;
      };
    default:
      return (r) => {
        const o: Record<string, unknown> = {};
        for (let i = 0; i < fields.length; i++) o[fields[i] as string] = r[i];
        return o;
      };
  }
}

/** `o[name] = value`, as a plain own property even when `name` is `__proto__`. */
function setField(o: Record<string, unknown>, name: string, value: unknown): void {
  if (name === "__proto__") Object.defineProperty(o, name, { value, enumerable: true, writable: true, configurable: true });
  else o[name] = value;
}

/** Options of a subscription (docs/protocol.md, SUBSCRIBE). */
export interface SubscribeOptions {
  /** This subscription's own cap on updates per second. */
  readonly maxRateHz?: number;
  /** Skip updates whose numeric fields all moved less than this. */
  readonly deadband?: number;
}

/** The wire form of subscription options. */
export function wireOptions(options: SubscribeOptions): Record<string, number> {
  const out: Record<string, number> = {};
  if (options.maxRateHz !== undefined) out["max_rate_hz"] = options.maxRateHz;
  if (options.deadband !== undefined) out["deadband"] = options.deadband;
  return out;
}

/**
 * One subscription's view of a component type: every entity it covers (or one), current
 * value and changes. Read `value` (or `version`) inside a computed or an effect to follow it.
 */
export class View<T> {
  /** The component's wire name. */
  readonly type: string;
  /** The one entity this view covers, or null for all of them. */
  readonly entity: number | null;
  /** The current values by entity. Mutated in place by the store: read it, never write it. */
  readonly map: ReadonlyMap<number, T> = new Map<number, T>();
  /** Bumped once per frame that changed this view. */
  readonly version: ReadonlySignal<number>;
  /** True once the view holds a complete snapshot (again false while a resync is under way). */
  readonly synced: ReadonlySignal<boolean>;
  /** Why the server refused this subscription, if it did (the view then stays empty). */
  readonly refused: ReadonlySignal<string | null>;

  private readonly _version: Signal<number> = signal(0);
  private readonly _synced: Signal<boolean> = signal(false);
  private readonly _refused: Signal<string | null> = signal(null);
  private readonly entitySignals = new Map<number, Signal<T | undefined>>();
  private readonly listeners = new Set<(changes: readonly Change<T>[]) => void>();
  private fields: readonly string[] = [];
  private build: (raw: readonly unknown[]) => Record<string, unknown> = valueBuilder([]);
  /** Entities held when the snapshot began and not yet seen in it. */
  private unseen: Set<number> | null = null;
  private pending: Change<T>[] = [];
  private dirty = false;

  constructor(type: string, entity: number | null) {
    this.type = type;
    this.entity = entity;
    this.version = this._version;
    this.synced = this._synced;
    this.refused = this._refused;
  }

  /** Every value by entity; reading it inside a computed or effect follows this view. */
  get value(): ReadonlyMap<number, T> {
    void this._version.value;
    return this.map;
  }

  /** One entity's value as a signal (undefined while it has none). */
  get(entity: number): ReadonlySignal<T | undefined> {
    let s = this.entitySignals.get(entity);
    if (s === undefined) {
      s = signal(this.map.get(entity));
      this.entitySignals.set(entity, s);
    }
    return s;
  }

  /** The entities whose value passes `test`, as a signal (recomputed when the view changes). */
  where(test: (value: T, entity: number) => boolean): ReadonlySignal<ReadonlyMap<number, T>> {
    return computed(() => {
      const out = new Map<number, T>();
      for (const [entity, value] of this.value) if (test(value, entity)) out.set(entity, value);
      return out;
    });
  }

  /** Calls `listener` with each frame's changes to this view; returns a function that stops it. */
  onChanges(listener: (changes: readonly Change<T>[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---------------------------------------------------------------- for the store

  /** @internal The field names of the type, in wire order (from the WELCOME). */
  setFields(fields: readonly string[]): void {
    if (fields.length === this.fields.length && fields.every((f, i) => f === this.fields[i])) return;
    this.fields = fields;
    this.build = valueBuilder(fields);
  }

  /** @internal The server refused this subscription (null: asked again). */
  refuse(reason: string | null): void {
    this._refused.value = reason;
  }

  /** @internal The connection was lost: the view keeps its values but is no longer synced. */
  unsync(): void {
    this._synced.value = false;
    this.unseen = null;
  }

  /** @internal Reads one upsert `[entity, values]` into `[entity, value]`, or throws naming
   * what is wrong. `base` is the value a field delta applies to (default: the view's; null:
   * none, as after a removal earlier in the same frame). */
  decode(item: unknown, base?: T | null): T {
    if (!Array.isArray(item) || item.length !== 2 || !isId(item[0])) {
      throw new ProtocolError(`SYNC group: an upsert is not [entity, values]: ${describe(item)}`, FrameKind.SYNC);
    }
    const entity = item[0] as number;
    const raw: unknown = item[1];
    const fields = this.fields;
    if (Array.isArray(raw)) {
      const n = fields.length;
      if (raw.length !== n) {
        throw new ProtocolError(`SYNC: ${this.type} of entity ${entity} has ${raw.length} values for ${n} fields`, FrameKind.SYNC);
      }
      return this.build(raw) as T;
    }
    if (!isMap(raw)) throw new ProtocolError(`SYNC group: an upsert is not [entity, values]: ${describe(item)}`, FrameKind.SYNC);
    const old = base === undefined ? this.map.get(entity) : (base ?? undefined);
    if (old === undefined) {
      throw new ProtocolError(`SYNC: a field delta of ${this.type} for entity ${entity}, which this view does not hold`, FrameKind.SYNC);
    }
    const out: Record<string, unknown> = { ...(old as Record<string, unknown>) };
    for (const key in raw) {
      const index = Number(key);
      if (!Number.isInteger(index) || index < 0 || index >= fields.length) {
        throw new ProtocolError(`SYNC: a field delta of ${this.type} names field ${describe(key)} of ${fields.length}`, FrameKind.SYNC);
      }
      setField(out, fields[index] as string, raw[key]);
    }
    return out as T;
  }

  /** @internal Applies one checked group whose values `decoded` holds (same order as upserts). */
  apply(group: Group, decoded: readonly T[]): void {
    const map = this.map as Map<number, T>;
    const snapshot = (group.flags & SyncFlag.SNAPSHOT) !== 0;
    if (snapshot && (group.flags & SyncFlag.CONTINUED) === 0) {
      this.unseen = new Set(map.keys()); // a snapshot begins
      this._synced.value = false;
    }
    for (const entity of group.removals) this.drop(entity, "removed");
    const upserts = group.upserts;
    const unseen = this.unseen;
    const signals = this.entitySignals.size > 0 ? this.entitySignals : null;
    const listening = this.listeners.size > 0;
    for (let i = 0; i < upserts.length; i++) {
      const entity = (upserts[i] as [number, unknown])[0];
      const value = decoded[i] as T;
      if (listening) this.pending.push({ kind: "upserted", entity, value, previous: map.get(entity) });
      map.set(entity, value);
      if (unseen !== null) unseen.delete(entity);
      if (signals !== null) {
        const s = signals.get(entity);
        if (s !== undefined) s.value = value;
      }
    }
    if (upserts.length > 0) this.dirty = true;
    for (const entity of group.despawns) this.drop(entity, "despawned");
    if (snapshot && (group.flags & SyncFlag.COMPLETE) !== 0) {
      for (const entity of this.unseen ?? []) this.drop(entity, "removed");
      this.unseen = null;
      this._synced.value = true;
    }
  }

  /** @internal Publishes what the frame changed: the version once, listeners once. */
  flush(): void {
    if (!this.dirty) return;
    this.dirty = false;
    this._version.value = this._version.peek() + 1;
    const changes = this.pending;
    this.pending = [];
    for (const listener of this.listeners) {
      try {
        listener(changes);
      } catch (error) {
        console.error("pl3xus-rx: a change listener of %s threw", this.type, error);
      }
    }
  }

  /** @internal Forgets every value (the subscription ended for good). */
  clear(): void {
    for (const entity of [...this.map.keys()]) this.drop(entity, "removed");
    this.flush();
  }

  private drop(entity: number, kind: "removed" | "despawned"): void {
    const map = this.map as Map<number, T>;
    const previous = map.get(entity);
    this.unseen?.delete(entity);
    if (previous === undefined) return;
    map.delete(entity);
    this.dirty = true;
    if (this.listeners.size > 0) this.pending.push({ kind, entity, previous });
    const s = this.entitySignals.get(entity);
    if (s !== undefined) s.value = undefined;
  }
}

/**
 * Applies checked SYNC groups to the views they name. Every group of the frame is decoded
 * before anything is applied, so a frame the client cannot read changes nothing.
 */
export function applyGroups(groups: readonly Group[], views: ReadonlyMap<number, View<unknown>>): View<unknown>[] {
  const plan: [View<unknown>, Group, unknown[]][] = [];
  // (values decided by an earlier group of this frame: only a frame of several groups has any)
  const shadow = groups.length > 1 ? new Map<View<unknown>, Map<number, unknown>>() : null;
  for (const group of groups) {
    const view = views.get(group.sub);
    if (view === undefined) continue; // (a subscription this client just ended)
    let known: Map<number, unknown> | undefined;
    if (shadow !== null) {
      known = shadow.get(view);
      if (known === undefined) shadow.set(view, (known = new Map()));
      for (const entity of group.removals) known.set(entity, undefined);
    }
    const upserts = group.upserts;
    const decoded: unknown[] = new Array(upserts.length);
    for (let i = 0; i < upserts.length; i++) {
      const item = upserts[i];
      if (known === undefined) {
        decoded[i] = view.decode(item);
        continue;
      }
      const entity = Array.isArray(item) ? item[0] : undefined;
      const value = known.has(entity) ? view.decode(item, known.get(entity) ?? null) : view.decode(item);
      known.set(entity, value);
      decoded[i] = value;
    }
    plan.push([view, group, decoded]);
  }
  for (const [view, group, decoded] of plan) view.apply(group, decoded);
  return plan.map(([view]) => view);
}
