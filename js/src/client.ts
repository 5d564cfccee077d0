/**
 * The connection shell: a WebSocket to a pl3xus_rx server (or several: the gateways of a
 * cluster), the WELCOME and schema check, subscriptions renewed on every connection, commands
 * as promises, reconnecting with backoff. What the frames mean is decided in `store.ts` and
 * `freshness.ts`; this file moves them.
 */
import { batch, computed, effect, signal, type ReadonlySignal, type Signal } from "@preact/signals-core";
import { codecFor, type Codec } from "./codec.js";
import type {
  ComponentRef,
  EntityControl,
  MessageType,
  OneWayType,
  QueryType,
  RequestType,
  Schema,
} from "./descriptors.js";
import { ENTITY_CONTROL, nameOf } from "./descriptors.js";
import {
  ClientClosed,
  CommandTimeout,
  ConnectionLost,
  MessageRejected,
  Pl3xusError,
  ProtocolError,
  RemoteError,
  SchemaMismatch,
  rejection,
  type FieldError,
} from "./errors.js";
import { Backoff, Freshness } from "./freshness.js";
import {
  CloseCode,
  ControlAction,
  FrameKind,
  JSON_SUBPROTOCOL,
  HISTORY_QUERY,
  LAST_MESSAGE_QUERY,
  MSGPACK_SUBPROTOCOL,
  NoticeKind,
  NotificationLevel,
  Status,
  type NotificationLevelValue,
} from "./protocol.js";
import { MAX_ID, View, applyGroups, describe, parseGroups, wireOptions, type SubscribeOptions } from "./store.js";

/** The least a WebSocket must do for this client (the browser's `WebSocket` does). */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  readonly readyState: number;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** Makes a WebSocket (the default: the global `WebSocket`). */
export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

/** A credential, or something that gives one (asked at every connection and refresh). */
export type TokenSource = string | (() => string | null | Promise<string | null>);

/** Options of {@link connect}. */
export interface ClientOptions {
  /** The types this client uses, checked against the server's (the generated `schema`). */
  readonly schema?: Schema;
  /** "msgpack" (default: smaller, faster) or "json". */
  readonly encoding?: "msgpack" | "json";
  /** A token for the server's authenticator, sent as the `token` query parameter. */
  readonly token?: TokenSource;
  /** Default timeout of commands, in seconds (10). */
  readonly commandTimeout?: number;
  /** On a v2 link, mark the data stale when older than this many seconds (2; null: never by age). */
  readonly staleAfter?: number | null;
  /** Acknowledge applied frames on a v2 link, so a busy client gets the latest values (true). */
  readonly acknowledge?: boolean;
  /** Offer protocol v1 only (for servers or tests that want it). */
  readonly protocolV1Only?: boolean;
  /** Reconnect delays, in seconds: first and largest (0.25, 10). */
  readonly backoff?: { readonly initial?: number; readonly max?: number };
  /** Makes the WebSocket (tests, or environments without a global one). */
  readonly webSocket?: WebSocketFactory;
  /** The clock, in seconds (tests). */
  readonly now?: () => number;
}

/** Where the connection stands. */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/** What the server's WELCOME said, as this client reads it. */
export interface Welcome {
  readonly version: number;
  readonly connectionId: number;
  readonly identity: { readonly name: string; readonly roles: readonly string[]; readonly anonymous: boolean };
  /** `[type_id, name, hash, fields]` per synced component. */
  readonly components: readonly (readonly [number, string, string, readonly string[]])[];
  /** `[name, hash, response_hash, targeted]` per request type. */
  readonly requests: readonly (readonly [string, string, string, boolean])[];
  /** `[name, params_hash, response_hash]` per query type. */
  readonly queries: readonly (readonly [string, string, string])[];
  /** `[id, name, hash]` per message type the server publishes. */
  readonly messages: readonly (readonly [number, string, string])[];
  /** `[name, hash, targeted]` per one-way message type clients send. */
  readonly oneWay: readonly (readonly [string, string, boolean])[];
  /** The whole WELCOME body, for keys this client does not read. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/** A notification the server's code sent for people (NOTICE `notification`). */
export interface Notification {
  readonly level: NotificationLevelValue;
  readonly text: string;
  readonly context: Readonly<Record<string, unknown>>;
}

/** How a connection ended (see {@link Pl3xusClient.lastClose}). */
export interface CloseInfo {
  /** The WebSocket close code (1006 when the link was let go without one). */
  readonly code: number;
  readonly reason: string;
  /** True when this client let a silent v2 link go (nothing heard for 3 beacon intervals). */
  readonly silent: boolean;
}

/** A NOTICE as it came: its kind and body. */
export interface Notice {
  readonly kind: string;
  readonly body: Readonly<Record<string, unknown>>;
}

/** The state of a query's answer. */
export type QueryState<R> =
  | { readonly status: "loading"; readonly value: R | undefined; readonly error: null }
  | { readonly status: "ok"; readonly value: R; readonly error: null }
  | { readonly status: "error"; readonly value: R | undefined; readonly error: Pl3xusError };

/** A live query: its state as a signal, refetched when the server invalidates it. */
export interface QueryHandle<R> {
  readonly state: ReadonlySignal<QueryState<R>>;
  /** Asks again now. */
  refetch(): void;
  /** Stops following it. */
  close(): void;
}

/** A point of a trend: the authority's flush time (seconds since the epoch) and the value. */
export type HistoryPoint<V = unknown> = readonly [number, V];

/** Options of {@link Pl3xusClient.history} and {@link Pl3xusClient.fetchHistory}. */
export interface HistoryOptions {
  /** How far back (default 600 s; the server gives at most what it keeps). */
  readonly seconds?: number;
  /** The most points the trend keeps (default 20,000; the oldest go first). */
  readonly maxPoints?: number;
  /** Seconds to wait for each part (the client's `commandTimeout` by default). */
  readonly timeout?: number;
}

/** A trend: the past the server keeps, then live values, as one signal of points. */
export interface HistoryHandle<V = unknown> {
  /** The points, oldest first. */
  readonly points: ReadonlySignal<readonly HistoryPoint<V>[]>;
  /** Why the past could not be had (null: it came, or is on its way). */
  readonly error: ReadonlySignal<Pl3xusError | null>;
  /** Stops following it. */
  close(): void;
}

/** The most parts one history fetch takes (a server that keeps sending cursors is cut off). */
const MAX_HISTORY_PARTS = 10_000;

/** Options of a command. */
export interface CommandOptions {
  /** Seconds to wait for the answer (the client's `commandTimeout` by default). */
  readonly timeout?: number;
}

interface Pending {
  readonly resolve: (body: Record<string, unknown>) => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

interface Sub {
  readonly id: number;
  readonly key: string;
  readonly type: string;
  readonly entity: number | null;
  readonly options: SubscribeOptions;
  readonly view: View<unknown>;
  users: number;
}

interface CachedQuery {
  readonly name: string;
  readonly params: Record<string, unknown>;
  readonly key: string;
  readonly state: Signal<QueryState<unknown>>;
  users: number;
  generation: number;
}

const OPEN = 1;
const MAX_TIMER_SECONDS = 2_000_000; // (under 2^31 - 1 ms: what setTimeout can wait)
const LEVELS: ReadonlySet<string> = new Set(Object.values(NotificationLevel));
const KNOWN_KINDS: ReadonlySet<number> = new Set(Object.values(FrameKind));
const NOTIFICATIONS_KEPT = 100;

/** `url` with the credential as its `token` query parameter (null: `url` is not a URL). */
function withToken(url: string, credential: string): string | null {
  try {
    const u = new URL(url);
    u.searchParams.set("token", credential);
    return u.toString();
  } catch {
    return null;
  }
}

/** JSON text of a value with map keys sorted: equal for equal parameters, whatever their key order. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/**
 * Schedules `run` as a task of its own, after the messages already waiting: frames that
 * arrive together are applied in one pass (a MessageChannel: cheaper than a 0 ms timer, and
 * never clamped to 4 ms).
 */
function soon(run: () => void): () => void {
  if (typeof MessageChannel === "undefined") return () => void setTimeout(run, 0);
  const channel = new MessageChannel();
  channel.port1.onmessage = run;
  (channel.port1 as { unref?: () => void }).unref?.(); // (node: does not keep the process alive)
  return () => channel.port2.postMessage(null);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function checkEntity(entity: number): void {
  if (!Number.isInteger(entity) || entity < 0 || entity > MAX_ID) throw new TypeError(`an entity id is an integer from 0 to 2^53 - 1, not ${String(entity)}`);
}

/** A string from the server as it is; anything else described (never converted: a map with a
 * `toString` of its own would throw). */
function text(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === null || value === undefined) return "";
  return describe(value);
}

function fieldErrors(body: unknown): FieldError[] {
  const errors = isRecord(body) ? body["errors"] : undefined;
  if (!Array.isArray(errors)) return [];
  return errors.filter(isRecord).map((e) => ({ loc: text(e["loc"]), msg: text(e["msg"]), type: text(e["type"]) }));
}

/**
 * A client of a pl3xus_rx server: typed signals of its components, commands as promises.
 * Make one with {@link connect}; it connects at once and keeps reconnecting until closed.
 */
export class Pl3xusClient {
  /** Where the server is: several URLs (gateways of one cluster) are tried in turn. */
  readonly urls: readonly string[];
  /** Where the connection stands. */
  readonly state: ReadonlySignal<ConnectionState>;
  /** The server's WELCOME on the current connection (null while there is none). */
  readonly welcome: ReadonlySignal<Welcome | null>;
  /** The latest problem: a refused frame, a schema mismatch, a message the server refused... */
  readonly error: ReadonlySignal<Pl3xusError | null>;
  /** The last notifications, oldest first (at most 100). */
  readonly notifications: ReadonlySignal<readonly Notification[]>;
  /** Seconds the data is old (v2 links; null on v1, or before the first frame). Updated 4 times a second. */
  readonly age: ReadonlySignal<number | null>;
  /** The server time the data is current as of (seconds since the epoch; v2 links). */
  readonly asOf: ReadonlySignal<number | null>;
  /** True while the data may not be current: not connected, not synced, or older than `staleAfter`. */
  readonly stale: ReadonlySignal<boolean>;
  /** Frames this client could not read, by kind (reported once per kind and connection). */
  readonly badFrames = new Map<number | string, number>();
  /** How the last connection ended (null before one did), set as it ends. */
  readonly lastClose: ReadonlySignal<CloseInfo | null>;

  private readonly _state: Signal<ConnectionState> = signal("connecting");
  private readonly _welcome: Signal<Welcome | null> = signal(null);
  private readonly _error: Signal<Pl3xusError | null> = signal(null);
  private readonly _notifications: Signal<readonly Notification[]> = signal([]);
  private readonly _age: Signal<number | null> = signal(null);
  private readonly _asOf: Signal<number | null> = signal(null);
  private readonly _tooOld: Signal<boolean> = signal(false);
  private readonly _subCount: Signal<number> = signal(0);
  private readonly _lastClose: Signal<CloseInfo | null> = signal(null);

  private readonly codec: Codec;
  private readonly options: ClientOptions;
  private readonly clock: () => number;
  private readonly freshness = new Freshness();
  private readonly backoff: Backoff;
  private socket: WebSocketLike | null = null;
  private urlIndex = 0;
  private attempt = 0;
  private closed = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private watchTimer: ReturnType<typeof setInterval> | null = null;
  private welcomeTimer: ReturnType<typeof setTimeout> | null = null;
  private lastWatch = 0;
  private ackTimer: ReturnType<typeof setTimeout> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private drainScheduled = false;
  private readonly wake: () => void;
  private readonly inbox: unknown[] = [];
  private nextReq = 1;
  private nextSub = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly subs = new Map<string, Sub>();
  private readonly entityViews = new Map<string, View<unknown>>();
  private readonly subsById = new Map<number, Sub>();
  private readonly views = new Map<number, View<unknown>>();
  private fields = new Map<string, readonly string[]>();
  private lastSeq = 0;
  private applied = 0; // frames applied since the last ACK
  private acked = 0;
  private v2 = false;
  private reported = new Set<number | string>();
  private readonly queries = new Map<string, CachedQuery>();
  private readonly messageListeners = new Map<string, Set<(value: unknown) => void>>();
  private readonly noticeListeners = new Set<(notice: Notice) => void>();
  private readonly lastMessages = new Map<string, Signal<unknown>>();
  private readonly openWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor(url: string | readonly string[], options: ClientOptions = {}) {
    this.urls = typeof url === "string" ? [url] : [...url];
    if (this.urls.length === 0) throw new TypeError("connect() needs at least one URL");
    this.options = options;
    this.codec = codecFor(options.encoding ?? "msgpack");
    // (a monotonic clock: ages and the dead-link timer survive a wall-clock step; ages need
    // no particular origin, only the offset to the server's clock, which is measured)
    this.clock = options.now ?? (() => performance.now() / 1000);
    this.backoff = new Backoff(options.backoff?.initial, options.backoff?.max);
    this.wake = soon(() => this.drain());
    this.state = this._state;
    this.welcome = this._welcome;
    this.error = this._error;
    this.notifications = this._notifications;
    this.age = this._age;
    this.asOf = this._asOf;
    this.lastClose = this._lastClose;
    this.stale = computed(() => {
      if (this._state.value !== "open" || this._tooOld.value) return true;
      void this._subCount.value;
      for (const sub of this.subs.values()) if (!sub.view.synced.value && sub.view.refused.value === null) return true;
      return false;
    });
    this.open();
  }

  // ------------------------------------------------------------------ connection

  /** Resolves once the client is connected and welcomed (rejects after `timeout` seconds). */
  ready(timeout = 10): Promise<void> {
    if (this.closed) return Promise.reject(new ClientClosed("the client is closed"));
    if (this._state.peek() === "open") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        const i = this.openWaiters.indexOf(waiter);
        if (i >= 0) this.openWaiters.splice(i, 1);
        reject(new CommandTimeout(`not connected to ${this.url} within ${timeout} s`));
      }, timeout * 1000);
      this.openWaiters.push(waiter);
    });
  }

  /** The URL in use (or tried next). */
  get url(): string {
    return this.urls[this.urlIndex] as string;
  }

  /** The connection id the server gave this client (null while not connected). */
  get connectionId(): number | null {
    return this._welcome.peek()?.connectionId ?? null;
  }

  /** Closes the connection for good; pending commands reject with {@link ClientClosed}. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopTimers();
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    const socket = this.socket;
    this.socket = null;
    if (socket !== null) {
      this.detach(socket);
      try {
        socket.close(1000, "client closed");
      } catch {
        /* already closing */
      }
    }
    if (this.watchTimer !== null) clearInterval(this.watchTimer);
    this.watchTimer = null;
    this.failPending(new ClientClosed("the client was closed"));
    for (const w of this.openWaiters.splice(0)) w.reject(new ClientClosed("the client was closed"));
    this._state.value = "closed";
  }

  private async open(): Promise<void> {
    if (this.closed) return;
    let url: string | null = this.url;
    const token = this.options.token;
    if (token !== undefined) {
      let credential: string | null;
      try {
        credential = typeof token === "string" ? token : await token();
      } catch (error) {
        this.report(new Pl3xusError(`the token callable failed: ${String(error)}`));
        this.scheduleReconnect(false);
        return;
      }
      if (this.closed) return;
      url = credential === null ? url : withToken(url, credential);
    }
    const v1 = this.codec.encoding === "json" ? JSON_SUBPROTOCOL : MSGPACK_SUBPROTOCOL;
    const protocols = this.options.protocolV1Only ? [v1] : [...this.codec.subprotocols];
    let socket: WebSocketLike;
    try {
      if (url === null) throw new TypeError("not a URL");
      const make = this.options.webSocket ?? ((u: string, p: string[]) => new WebSocket(u, p) as unknown as WebSocketLike);
      socket = make(url, protocols);
    } catch (error) {
      this.report(new Pl3xusError(`cannot open ${this.url}: ${String(error)}`));
      this.scheduleReconnect(false);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    const limit = Math.max(2, this.options.commandTimeout ?? 10);
    this.welcomeTimer = setTimeout(() => {
      this.welcomeTimer = null;
      if (this.socket !== socket || this._welcome.peek() !== null) return;
      this.report(new Pl3xusError(`no WELCOME from ${this.url} within ${limit} s: trying again`));
      try {
        socket.close(1000, "no WELCOME");
      } catch {
        /* already closing */
      }
      this.lost(socket, 1006, "no WELCOME");
    }, limit * 1000);
    socket.onmessage = (event) => this.receive(socket, event.data);
    socket.onclose = (event) => this.lost(socket, event.code, event.reason);
    socket.onerror = () => {
      /* the close event follows and says why */
    };
  }

  private detach(socket: WebSocketLike): void {
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = null;
    socket.onopen = null;
  }

  private lost(socket: WebSocketLike, code: number, reason: string, silent = false): void {
    if (socket !== this.socket) return;
    this.detach(socket);
    this.socket = null;
    this.drain(); // (what arrived before the close is still applied)
    this.stopTimers();
    const wasOpen = this._welcome.peek() !== null;
    batch(() => {
      this._welcome.value = null;
      this._lastClose.value = { code, reason, silent };
      for (const sub of this.subs.values()) sub.view.unsync();
    });
    this.failPending(new ConnectionLost(`the connection to ${this.url} closed (${code}${reason ? `: ${reason}` : ""})`));
    if (this.closed) return;
    if (code === CloseCode.CREDENTIAL_EXPIRED || code === CloseCode.DISCONNECTED) {
      this.report(new Pl3xusError(`the server closed the connection: ${code} ${reason}`));
    }
    const moved = code === CloseCode.MOVED;
    if (moved || !wasOpen) this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this.scheduleReconnect(moved);
  }

  private scheduleReconnect(atOnce: boolean): void {
    if (this.closed) return;
    this._state.value = this._state.peek() === "connecting" && this.attempt === 0 ? "connecting" : "reconnecting";
    this.attempt += 1;
    const delay = atOnce ? 0 : this.backoff.delay(this.attempt, Math.random());
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.open();
    }, delay * 1000);
  }

  /** Stops what belongs to one connection (the watch goes on: the data keeps aging). */
  private stopTimers(): void {
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    if (this.refreshTimer !== null) clearTimeout(this.refreshTimer);
    if (this.welcomeTimer !== null) clearTimeout(this.welcomeTimer);
    this.ackTimer = this.refreshTimer = this.welcomeTimer = null;
    this.inbox.length = 0;
  }

  private failPending(error: Error): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(error);
    }
  }

  private sendFrame(frame: readonly unknown[]): boolean {
    const socket = this.socket;
    if (socket === null || socket.readyState !== OPEN || this._welcome.peek() === null) return false;
    socket.send(this.codec.encode(frame));
    return true;
  }

  // ------------------------------------------------------------------ receiving

  private receive(socket: WebSocketLike, data: unknown): void {
    if (socket !== this.socket) return;
    this.freshness.heard(this.clock());
    let frame: unknown;
    try {
      frame = this.codec.decode(data);
    } catch (error) {
      this.bad("undecodable", new ProtocolError(`a frame that is not ${this.codec.encoding}: ${String(error)}`));
      return;
    }
    if (!Array.isArray(frame) || frame.length === 0 || !Number.isInteger(frame[0])) {
      this.bad("not_a_frame", new ProtocolError(`a frame that is not an array with a kind: ${describe(frame)}`));
      return;
    }
    if (this._welcome.peek() === null) {
      if (frame[0] !== FrameKind.WELCOME) {
        this.bad(frame[0] as number, new ProtocolError(`a frame of kind ${String(frame[0])} before the WELCOME`, frame[0] as number));
        return;
      }
      this.welcomed(frame);
      return;
    }
    this.inbox.push(frame);
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      this.wake();
    }
  }

  /** Applies every frame that arrived so far, in order, inside one batch. */
  private drain(): void {
    this.drainScheduled = false;
    if (this.inbox.length === 0) return;
    const frames = this.inbox.splice(0);
    const touched = new Set<View<unknown>>();
    const after: (() => void)[] = [];
    let syncs = 0;
    try {
      batch(() => {
      for (const frame of frames as unknown[][]) {
        const kind = frame[0] as number;
        try {
          if (kind === FrameKind.SYNC) {
            this.onSync(frame, touched);
            syncs += 1;
          } else this.onFrame(kind, frame, after);
        } catch (error) {
          if (error instanceof ProtocolError) this.bad(kind, error);
          else this.bad(kind, new ProtocolError(`frame kind ${kind}: ${String(error)}`, kind));
        }
      }
      for (const view of touched) view.flush();
      });
    } catch (error) {
      // (an effect of the application threw while the frame's values were shown: its error,
      // not the client's; answers and acknowledgements go on)
      console.error("pl3xus-rx: an effect threw while a frame was applied", error);
    }
    for (const run of after) {
      // (command answers: after the values they depend on are shown)
      try {
        run();
      } catch (error) {
        console.error("pl3xus-rx: a listener threw", error);
      }
    }
    if (syncs > 0) this.acknowledge(syncs);
  }

  private welcomed(frame: unknown[]): void {
    if (this.welcomeTimer !== null) clearTimeout(this.welcomeTimer);
    this.welcomeTimer = null;
    try {
      this.readWelcome(frame);
    } catch (error) {
      this.bad(FrameKind.WELCOME, new ProtocolError(`an unreadable WELCOME: ${String(error)}`, FrameKind.WELCOME));
      const socket = this.socket;
      if (socket !== null) {
        try {
          socket.close(1002, "unreadable WELCOME");
        } catch {
          /* already closing */
        }
        this.lost(socket, 1002, "unreadable WELCOME");
      }
    }
  }

  private readWelcome(frame: unknown[]): void {
    const body = frame[1];
    if (!isRecord(body) || !Number.isInteger(body["connection_id"]) || !Number.isInteger(body["version"])) {
      this.bad(FrameKind.WELCOME, new ProtocolError(`a WELCOME without version and connection_id: ${describe(body)}`, FrameKind.WELCOME));
      this.socket?.close(1002, "unreadable WELCOME");
      return;
    }
    const rows = (key: string, shape: readonly ("n" | "s" | "b" | "a")[]): unknown[][] => {
      const raw = body[key];
      if (!Array.isArray(raw)) return [];
      const fits = (row: unknown): row is unknown[] =>
        Array.isArray(row) &&
        row.length >= shape.length &&
        shape.every((t, i) => {
          const v: unknown = row[i];
          if (t === "n") return typeof v === "number";
          if (t === "s") return typeof v === "string";
          if (t === "b") return typeof v === "boolean";
          return Array.isArray(v) && v.every((x) => typeof x === "string");
        });
      return raw.filter(fits);
    };
    const list = (key: string): unknown[][] => {
      const shapes: Record<string, readonly ("n" | "s" | "b" | "a")[]> = {
        components: ["n", "s", "s", "a"],
        requests: ["s", "s", "s", "b"],
        queries: ["s", "s", "s"],
        messages: ["n", "s", "s"],
        one_way: ["s", "s", "b"],
      };
      return rows(key, shapes[key] ?? []);
    };
    const identity = isRecord(body["identity"]) ? body["identity"] : {};
    const welcome: Welcome = {
      version: body["version"] as number,
      connectionId: body["connection_id"] as number,
      identity: {
        name: typeof identity["name"] === "string" ? identity["name"] : "anonymous",
        roles: Array.isArray(identity["roles"]) ? identity["roles"].filter((r): r is string => typeof r === "string") : [],
        anonymous: identity["anonymous"] !== false,
      },
      components: list("components") as unknown as Welcome["components"],
      requests: list("requests") as unknown as Welcome["requests"],
      queries: list("queries") as unknown as Welcome["queries"],
      messages: list("messages") as unknown as Welcome["messages"],
      oneWay: list("one_way") as unknown as Welcome["oneWay"],
      raw: body,
    };
    this.fields = new Map(welcome.components.map((row) => [row[1], row[3]]));
    this.v2 = welcome.version >= 2;
    const given = body["as_of_interval"];
    // (a beacon interval the client can live with: a server cannot switch off dead-link
    // detection with Infinity or NaN, nor make every link dead with 0)
    const interval = this.v2 && typeof given === "number" && Number.isFinite(given) ? Math.min(60, Math.max(0.05, given)) : this.v2 ? 0.5 : null;
    const now = this.clock();
    this.freshness.connected(interval, now);
    this.lastSeq = 0;
    this.applied = 0;
    this.acked = 0;
    this.attempt = 0;
    this.reported = new Set();
    this.checkSchema(welcome);
    batch(() => {
      this._welcome.value = welcome;
      this._state.value = "open";
      this._tooOld.value = false;
      for (const sub of this.subs.values()) this.subscribe(sub);
    });
    for (const w of this.openWaiters.splice(0)) w.resolve();
    for (const q of this.queries.values()) this.runQuery(q);
    for (const name of this.lastMessages.keys()) this.fetchLast(name);
    this.lastWatch = now;
    if (this.watchTimer === null) this.watchTimer = setInterval(() => this.watch(), 250);
    const expiresIn = body["expires_in"];
    if (body["refresh"] === true && typeof expiresIn === "number") this.planRefresh(expiresIn);
  }

  private checkSchema(welcome: Welcome): void {
    const schema = this.options.schema;
    if (schema === undefined) return;
    const remoteComponents = new Map(welcome.components.map((r) => [r[1], r]));
    for (const c of schema.components ?? []) {
      const remote = remoteComponents.get(c.name);
      if (remote === undefined) this.report(new SchemaMismatch(c.name, c.hash, null));
      else if (remote[2] !== c.hash) {
        const theirs = new Set(remote[3]);
        const ours = new Set(c.fields);
        const diff = [...[...theirs].filter((f) => !ours.has(f)).map((f) => `+${f}`), ...[...ours].filter((f) => !theirs.has(f)).map((f) => `-${f}`)];
        this.report(new SchemaMismatch(c.name, c.hash, remote[2], diff.length ? `the server's fields differ: ${diff.join(" ")}` : "field types or defaults differ"));
      }
    }
    const check = (kind: string, local: readonly { name: string; hash: string; responseHash?: string }[] | undefined, remote: Map<string, string>): void => {
      for (const t of local ?? []) {
        const ours = t.responseHash === undefined ? t.hash : `${t.hash}/${t.responseHash}`;
        const theirs = remote.get(t.name);
        if (theirs !== ours) this.report(new SchemaMismatch(`${kind} ${t.name}`, ours, theirs ?? null));
      }
    };
    check("request", schema.requests, new Map(welcome.requests.map((r) => [r[0], `${r[1]}/${r[2]}`])));
    check("query", schema.queries, new Map(welcome.queries.map((r) => [r[0], `${r[1]}/${r[2]}`])));
    check("message", schema.messages, new Map(welcome.messages.map((r) => [r[1], r[2]])));
    check("one-way message", schema.oneWay, new Map(welcome.oneWay.map((r) => [r[0], r[1]])));
  }

  private onSync(frame: unknown[], touched: Set<View<unknown>>): void {
    const v2 = this.v2;
    if (frame.length !== (v2 ? 5 : 3)) throw new ProtocolError(`SYNC of ${frame.length} elements (expected ${v2 ? 5 : 3})`, FrameKind.SYNC);
    const seq = frame[1];
    if (!Number.isInteger(seq)) throw new ProtocolError(`SYNC seq ${describe(seq)} is not an integer`, FrameKind.SYNC);
    if (v2 && (typeof frame[3] !== "number" || typeof frame[4] !== "number")) throw new ProtocolError("SYNC as_of / age are not numbers", FrameKind.SYNC);
    const groups = parseGroups(frame[2]);
    const previous = this.lastSeq;
    const gap = (seq as number) !== previous + 1;
    this.lastSeq = seq as number;
    for (const view of applyGroups(groups, this.views)) touched.add(view);
    if (v2) this.observe(frame[3] as number, frame[4] as number);
    if (gap) {
      // A frame was lost: what follows may build on it. Start every view over from a snapshot.
      this.report(new ProtocolError(`SYNC ${String(seq)} after ${previous}: a gap; asking for fresh snapshots`, FrameKind.SYNC));
      this.sendFrame([FrameKind.RESYNC, null]);
    }
  }

  private observe(asOf: number, age: number): void {
    this.freshness.observe(this.clock(), asOf, age);
    this._asOf.value = this.freshness.currentAsOf;
  }

  private onFrame(kind: number, frame: unknown[], after: (() => void)[]): void {
    switch (kind) {
      case FrameKind.REPLY: {
        const [, reqId, status, message, body] = frame;
        if (!Number.isInteger(reqId) || typeof status !== "string") throw new ProtocolError(`REPLY ${describe(frame)} is not [REPLY, req_id, status, message, body]`, kind);
        const id = reqId as number;
        const pending = this.pending.get(id);
        if (pending === undefined) return; // (timed out already)
        const map = isRecord(body) ? body : {};
        const error = status === Status.OK ? null : rejection(status, text(message), fieldErrors(map));
        after.push(() => {
          if (this.pending.get(id) !== pending) return; // (settled meanwhile: closed, lost)
          this.pending.delete(id);
          clearTimeout(pending.timer);
          if (error === null) pending.resolve(map);
          else pending.reject(error);
        });
        return;
      }
      case FrameKind.BEACON: {
        if (frame.length !== 4 || typeof frame[2] !== "number" || typeof frame[3] !== "number") throw new ProtocolError(`BEACON ${describe(frame)} is not [BEACON, seq, as_of, age]`, kind);
        this.observe(frame[2], frame[3]);
        return;
      }
      case FrameKind.MESSAGE: {
        const [, name, payload] = frame;
        if (typeof name !== "string") throw new ProtocolError("MESSAGE without a type name", kind);
        const last = this.lastMessages.get(name);
        if (last !== undefined) last.value = payload;
        for (const listener of this.messageListeners.get(name) ?? []) after.push(() => listener(payload));
        return;
      }
      case FrameKind.NOTICE: {
        const [, noticeKind, body] = frame;
        if (typeof noticeKind !== "string" || !isRecord(body)) throw new ProtocolError(`NOTICE ${describe(frame)} is not [NOTICE, kind, body]`, kind);
        this.handleNotice(noticeKind, body);
        for (const listener of this.noticeListeners) after.push(() => listener({ kind: noticeKind, body }));
        return;
      }
      case FrameKind.INVALIDATE: {
        const [, name, keys] = frame;
        if (typeof name !== "string" || (keys !== null && !Array.isArray(keys))) throw new ProtocolError(`INVALIDATE ${describe(frame)} is not [INVALIDATE, name, keys]`, kind);
        const wanted = keys === null ? null : new Set((keys as unknown[]).map(canonical));
        for (const q of this.queries.values()) {
          if (q.name === name && (wanted === null || wanted.has(canonical(q.params)))) after.push(() => this.runQuery(q));
        }
        return;
      }
      case FrameKind.ERROR: {
        const body = frame[1];
        if (!isRecord(body)) throw new ProtocolError(`ERROR ${describe(frame)} has no body`, kind);
        const error = new RemoteError(text(body["code"]) || "error", text(body["message"]), body);
        const refused = body["subscription"];
        const sub = typeof refused === "number" ? this.subsById.get(refused) : undefined;
        if (sub !== undefined && !sub.view.synced.peek()) sub.view.refuse(error.message);
        this.report(error);
        return;
      }
      case FrameKind.WELCOME:
        throw new ProtocolError("a second WELCOME on one connection", kind);
      default:
        throw new ProtocolError(`a frame of unknown kind ${kind}`, kind);
    }
  }

  private handleNotice(kind: string, body: Record<string, unknown>): void {
    if (kind === NoticeKind.NOTIFICATION) {
      const level = body["level"];
      const n: Notification = {
        level: LEVELS.has(level as string) ? (level as NotificationLevelValue) : NotificationLevel.INFO,
        text: text(body["text"]),
        context: isRecord(body["context"]) ? body["context"] : {},
      };
      const list = [...this._notifications.peek(), n];
      this._notifications.value = list.length > NOTIFICATIONS_KEPT ? list.slice(-NOTIFICATIONS_KEPT) : list;
    } else if (kind === NoticeKind.MESSAGE_REJECTED) {
      const entity = body["entity"];
      this.report(
        new MessageRejected(text(body["type"]) || "?", typeof entity === "number" ? entity : null, text(body["status"]) || "?", text(body["reason"]), fieldErrors(body)),
      );
    }
  }

  /** Reports a frame this client cannot read: once per kind and connection, then only counted. */
  private bad(kind: number | string, error: ProtocolError): void {
    if (typeof kind === "number" && !KNOWN_KINDS.has(kind)) kind = "unknown_kind"; // (bounded keys)
    this.badFrames.set(kind, (this.badFrames.get(kind) ?? 0) + 1);
    if (this.reported.has(kind)) return;
    this.reported.add(kind);
    console.warn(`pl3xus-rx: a frame of kind ${String(kind)} from ${this.url} could not be read: ${error.message}`);
    this._error.value = error;
  }

  private report(error: Pl3xusError): void {
    if (!(error instanceof RemoteError) && !(error instanceof MessageRejected)) console.warn(`pl3xus-rx: ${error.message}`);
    this._error.value = error;
  }

  private acknowledge(frames: number): void {
    if (!this.v2 || this.options.acknowledge === false) return;
    this.applied += frames;
    if (this.applied >= 2) this.sendAck();
    else if (this.ackTimer === null) this.ackTimer = setTimeout(() => this.sendAck(), 100);
  }

  private sendAck(): void {
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (this.lastSeq > this.acked && this.sendFrame([FrameKind.ACK, this.lastSeq])) {
      this.acked = this.lastSeq;
      this.applied = 0;
    }
  }

  /** Every 250 ms from the first welcome until closed: the age, stale by age, a dead link. */
  private watch(): void {
    const now = this.clock();
    // a late tick means this page's thread stalled: frames may be waiting to be read, so
    // silence measured across it says nothing of the link
    const late = now - this.lastWatch > 1;
    this.lastWatch = now;
    const socket = this.socket;
    if (!late && socket !== null && this._welcome.peek() !== null && this.freshness.dead(now)) {
      this.report(new Pl3xusError(`nothing heard from ${this.url} for ${this.freshness.deadAfter} s: reconnecting`));
      try {
        socket.close(1000, "no frame within three beacon intervals");
      } catch {
        /* already closing */
      }
      this.lost(socket, 1006, "link silent", true);
      return;
    }
    const age = this.freshness.age(now);
    const limit = this.options.staleAfter === undefined ? 2 : this.options.staleAfter;
    batch(() => {
      this._age.value = age === null ? null : Math.round(age * 100) / 100;
      this._tooOld.value = age !== null && limit !== null && age > limit;
    });
  }

  private planRefresh(expiresIn: number): void {
    const token = this.options.token;
    if (typeof token !== "function" || !Number.isFinite(expiresIn) || expiresIn <= 0) return;
    if (this.refreshTimer !== null) clearTimeout(this.refreshTimer);
    const lead = Math.min(30, expiresIn * 0.2);
    // (at least 1 s apart, whatever the server says; and a timer cannot wait more than
    // 2^31 - 1 ms: a longer wait would fire at once, so it waits in steps)
    const wait = Math.max(1, expiresIn - lead);
    const step = Math.min(wait, MAX_TIMER_SECONDS);
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      if (step < wait) {
        this.planRefresh(expiresIn - step);
        return;
      }
      void this.refreshCredential().catch((e: Error) => this.report(new Pl3xusError(`credential refresh failed: ${e.message}`)));
    }, step * 1000);
  }

  /** Hands the server a new credential for this connection (the same identity), without reconnecting. Resolves to seconds until it expires (null: never). */
  async refreshCredential(token?: string): Promise<number | null> {
    let credential = token ?? null;
    if (credential === null) {
      const source = this.options.token;
      credential = typeof source === "function" ? await source() : (source ?? null);
    }
    if (credential === null) throw new TypeError("this client has no token to refresh with");
    const body = await this.command((id) => [FrameKind.REFRESH, id, credential], undefined);
    const expiresIn = typeof body["expires_in"] === "number" ? body["expires_in"] : null;
    if (expiresIn !== null) this.planRefresh(expiresIn);
    return expiresIn;
  }

  // ------------------------------------------------------------------ subscriptions

  /**
   * A view of one component type: every entity that has it (or one, with `entity`), as the
   * server's read rules let this client see. Views with the same arguments are shared; call
   * {@link release} when done with one.
   */
  components<T>(type: ComponentRef<T>, options: SubscribeOptions & { readonly entity?: number } = {}): View<T> {
    const name = nameOf(type);
    const entity = options.entity ?? null;
    if (entity !== null) checkEntity(entity);
    const subOptions: SubscribeOptions = { maxRateHz: options.maxRateHz, deadband: options.deadband };
    const key = `${name}\u0000${entity ?? ""}\u0000${canonical(wireOptions(subOptions))}`;
    let sub = this.subs.get(key);
    if (sub === undefined) {
      sub = { id: this.nextSub++, key, type: name, entity, options: subOptions, view: new View<unknown>(name, entity), users: 0 };
      this.subs.set(key, sub);
      this.subsById.set(sub.id, sub);
      this.views.set(sub.id, sub.view);
      this._subCount.value = this.subs.size;
      if (this._welcome.peek() !== null) this.subscribe(sub);
    }
    sub.users += 1;
    return sub.view as View<T>;
  }

  /** One entity's value of a component type, as a signal (shares the type's view, kept while the client lives). */
  entity<T>(type: ComponentRef<T>, entity: number): ReadonlySignal<T | undefined> {
    checkEntity(entity);
    const name = nameOf(type);
    let view = this.entityViews.get(name);
    if (view === undefined) {
      // (one use of the type's view for every entity signal, held while the client lives:
      // calling this again, in an effect or a render, costs a lookup, never another use)
      view = this.components(type) as View<unknown>;
      this.entityViews.set(name, view);
    }
    return (view as View<T>).get(entity);
  }

  /** Who holds control of an entity (its `EntityControl`), as a signal. */
  controlledBy(entity: number): ReadonlySignal<EntityControl | undefined> {
    return this.entity<EntityControl>(ENTITY_CONTROL, entity);
  }

  /** Ends one use of a view; the subscription ends when its last user releases it. */
  release<T>(view: View<T>): void {
    for (const sub of this.subs.values()) {
      if (sub.view !== (view as View<unknown>)) continue;
      sub.users -= 1;
      if (sub.users > 0) return;
      this.subs.delete(sub.key);
      this.subsById.delete(sub.id);
      this.views.delete(sub.id);
      this._subCount.value = this.subs.size;
      this.sendFrame([FrameKind.UNSUBSCRIBE, sub.id]);
      view.clear();
      return;
    }
  }

  /** Asks the server for fresh snapshots of every subscription. */
  resync(): void {
    this.sendFrame([FrameKind.RESYNC, null]);
  }

  private subscribe(sub: Sub): void {
    const fields = this.fields.get(sub.type);
    if (fields === undefined) {
      sub.view.refuse(`the server does not sync ${sub.type}`);
      this.report(new SchemaMismatch(sub.type, null, null, "the server does not sync this type; its view stays empty"));
      return;
    }
    sub.view.setFields(fields);
    sub.view.refuse(null); // (refused by an earlier connection, maybe: asked again)
    this.sendFrame([FrameKind.SUBSCRIBE, sub.id, sub.type, sub.entity, wireOptions(sub.options)]);
  }

  // ------------------------------------------------------------------ commands

  private command(frame: (id: number) => unknown[], timeout: number | undefined): Promise<Record<string, unknown>> {
    if (this.closed) return Promise.reject(new ClientClosed("the client is closed"));
    const id = this.nextReq++;
    const seconds = timeout ?? this.options.commandTimeout ?? 10;
    return new Promise((resolve, reject) => {
      if (!this.sendFrame(frame(id))) {
        reject(new ConnectionLost(`not connected to ${this.url}`));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CommandTimeout(`no answer from ${this.url} within ${seconds} s (the server may still apply it)`));
      }, seconds * 1000);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  /**
   * Writes a component's value on an entity. Resolves once the server applied it and this
   * client's views of that entity show it (read-your-writes); rejects with the reason otherwise.
   */
  async mutate<T>(type: ComponentRef<T>, entity: number, value: T, options: CommandOptions = {}): Promise<void> {
    checkEntity(entity);
    await this.command((id) => [FrameKind.MUTATE, id, nameOf(type), entity, value], options.timeout);
  }

  /** Sends a request (to an entity, for targeted types); resolves to the server's response. */
  async request<Q, R>(type: RequestType<Q, R> | string, payload: Q, options: CommandOptions & { readonly entity?: number } = {}): Promise<R> {
    const entity = options.entity ?? null;
    if (entity !== null) checkEntity(entity);
    const body = await this.command((id) => [FrameKind.REQUEST, id, nameOf(type), entity, payload], options.timeout);
    return body["value"] as R;
  }

  /** Asks a query once; resolves to its answer. */
  async fetch<P, R>(type: QueryType<P, R> | string, params: P, options: CommandOptions = {}): Promise<R> {
    const body = await this.command((id) => [FrameKind.QUERY, id, nameOf(type), params], options.timeout);
    return body["value"] as R;
  }

  /** A query's answer as a signal, asked again when the server invalidates it or the client reconnects. */
  query<P, R>(type: QueryType<P, R> | string, params: P): QueryHandle<R> {
    const name = nameOf(type);
    const key = `${name}\u0000${canonical(params)}`;
    let q = this.queries.get(key);
    if (q === undefined) {
      q = { name, params: params as Record<string, unknown>, key, state: signal<QueryState<unknown>>({ status: "loading", value: undefined, error: null }), users: 0, generation: 0 };
      this.queries.set(key, q);
      if (this._welcome.peek() !== null) this.runQuery(q);
    }
    q.users += 1;
    const cached = q;
    let closed = false;
    return {
      state: cached.state as ReadonlySignal<QueryState<R>>,
      refetch: () => this.runQuery(cached),
      close: () => {
        if (closed) return;
        closed = true;
        cached.users -= 1;
        if (cached.users === 0) this.queries.delete(cached.key);
      },
    };
  }

  private runQuery(q: CachedQuery): void {
    const generation = ++q.generation;
    const previous = q.state.peek().value;
    if (q.state.peek().status !== "loading") q.state.value = { status: "loading", value: previous, error: null };
    this.fetch(q.name, q.params).then(
      (value) => {
        if (generation === q.generation) q.state.value = { status: "ok", value, error: null };
      },
      (error: unknown) => {
        if (generation !== q.generation) return;
        if (error instanceof ConnectionLost && !this.closed) return; // (asked again on reconnect)
        q.state.value = { status: "error", value: previous, error: error instanceof Pl3xusError ? error : new Pl3xusError(String(error)) };
      },
    );
  }

  /** Sends a one-way message (no answer; a refusal arrives on {@link error} as {@link MessageRejected}). Returns false when not connected. */
  send<T>(type: OneWayType<T> | string, payload: T, options: { readonly entity?: number } = {}): boolean {
    const entity = options.entity ?? null;
    if (entity !== null) checkEntity(entity);
    return this.sendFrame([FrameKind.SEND, nameOf(type), entity, payload]);
  }

  /** Spawns an entity with the given components (under `parent`); resolves to its id. */
  async spawn(components: readonly (readonly [ComponentRef<unknown>, unknown])[], options: CommandOptions & { readonly parent?: number } = {}): Promise<number> {
    const parent = options.parent ?? null;
    if (parent !== null) checkEntity(parent);
    const map: Record<string, unknown> = {};
    for (const [type, value] of components) map[nameOf(type)] = value;
    const body = await this.command((id) => [FrameKind.SPAWN, id, parent, map], options.timeout);
    return body["entity"] as number;
  }

  /** Despawns an entity and its children. */
  async despawn(entity: number, options: CommandOptions = {}): Promise<void> {
    checkEntity(entity);
    await this.command((id) => [FrameKind.DESPAWN, id, entity], options.timeout);
  }

  /** Takes exclusive control of an entity (rejects with {@link Forbidden} if another holds it). */
  async takeControl(entity: number, options: CommandOptions = {}): Promise<void> {
    checkEntity(entity);
    await this.command((id) => [FrameKind.CONTROL, id, ControlAction.TAKE, entity], options.timeout);
  }

  /** Releases control of an entity. */
  async releaseControl(entity: number, options: CommandOptions = {}): Promise<void> {
    checkEntity(entity);
    await this.command((id) => [FrameKind.CONTROL, id, ControlAction.RELEASE, entity], options.timeout);
  }

  // ------------------------------------------------------------------ messages and notices

  /** Calls `listener` with each message of a type the server publishes; returns a function that stops it. */
  onMessage<T>(type: MessageType<T> | string, listener: (value: T) => void): () => void {
    const name = nameOf(type);
    let set = this.messageListeners.get(name);
    if (set === undefined) {
      set = new Set();
      this.messageListeners.set(name, set);
    }
    const l = listener as (value: unknown) => void;
    set.add(l);
    return () => set.delete(l);
  }

  /** The last message of a type the server published (asked at each connection, then followed). */
  lastMessage<T>(type: MessageType<T> | string): ReadonlySignal<T | null> {
    const name = nameOf(type);
    let s = this.lastMessages.get(name);
    if (s === undefined) {
      s = signal<unknown>(null);
      this.lastMessages.set(name, s);
      if (this._welcome.peek() !== null) this.fetchLast(name);
    }
    return s as ReadonlySignal<T | null>;
  }

  private fetchLast(name: string): void {
    const s = this.lastMessages.get(name);
    this.fetch<{ type: string }, { value: unknown }>(LAST_MESSAGE_QUERY, { type: name }).then(
      (answer) => {
        if (s !== undefined && s.peek() === null && answer.value !== null) s.value = answer.value;
      },
      () => {
        /* not known to this server, or the connection went: the next welcome asks again */
      },
    );
  }

  // ------------------------------------------------------------------ history

  /**
   * What the server keeps of an entity's component (`pl3xus.history`; the WELCOME's
   * `history` key says which types keep it), oldest first: `[t, value]` with `t` the
   * authority's flush time, `value` the field's value, or (no `field`) the whole value (or
   * the kept fields) as an object. Every part is fetched before it resolves.
   */
  async fetchHistory<V = unknown>(type: ComponentRef<unknown>, entity: number, field: string | null = null, options: HistoryOptions = {}): Promise<HistoryPoint<V>[]> {
    return (await this.historyParts<V>(nameOf(type), entity, field, options)).points;
  }

  private async historyParts<V>(name: string, entity: number, field: string | null, options: HistoryOptions): Promise<{ until: number; points: HistoryPoint<V>[] }> {
    checkEntity(entity);
    let params: Record<string, unknown> = { type: name, entity, field, seconds: options.seconds ?? 600 };
    const points: HistoryPoint<V>[] = [];
    let until = 0;
    for (let part = 0; part < MAX_HISTORY_PARTS; part++) {
      const answer = await this.fetch<Record<string, unknown>, Record<string, unknown>>(HISTORY_QUERY, params, { timeout: options.timeout });
      until = typeof answer["until"] === "number" ? answer["until"] : 0;
      const columns = Array.isArray(answer["fields"]) ? (answer["fields"] as string[]) : [];
      const whole = answer["whole"] === true;
      for (const row of Array.isArray(answer["series"]) ? (answer["series"] as unknown[][]) : []) {
        if (!Array.isArray(row) || row[0] !== entity || !Array.isArray(row[1])) continue;
        const times = row[1] as number[];
        const cols = row.slice(2) as unknown[][];
        times.forEach((t, i) => {
          let value: unknown;
          if (whole) value = Object.fromEntries(columns.map((c, j) => [c, (cols[0]?.[i] as unknown[] | undefined)?.[j]]));
          else if (cols.length === 1) value = cols[0]?.[i];
          else value = Object.fromEntries(columns.map((c, j) => [c, cols[j]?.[i]]));
          points.push([t, value as V]);
        });
      }
      const cursor = answer["cursor"];
      if (!Array.isArray(cursor)) break;
      params = { ...params, cursor };
    }
    return { until, points };
  }

  /**
   * A trend of an entity's component (one `field`, or the whole value): it fills with the
   * past the server keeps (in parts), then goes on with live values on the same signal
   * (`t`: the server's as-of time of the data, on a v2 link; else this machine's clock).
   * Points older than `seconds` before the newest go. Call `close()` when done.
   */
  history<V = unknown>(type: ComponentRef<unknown>, entity: number, field: string | null = null, options: HistoryOptions = {}): HistoryHandle<V> {
    checkEntity(entity);
    const name = nameOf(type);
    const seconds = options.seconds ?? 600;
    const maxPoints = options.maxPoints ?? 20_000;
    const points = signal<readonly HistoryPoint<V>[]>([]);
    const error = signal<Pl3xusError | null>(null);
    const bounded = (all: HistoryPoint<V>[]): HistoryPoint<V>[] => {
      if (all.length === 0) return all;
      const oldest = (all[all.length - 1] as HistoryPoint<V>)[0] - seconds;
      let start = Math.max(0, all.length - maxPoints);
      while (start < all.length && (all[start] as HistoryPoint<V>)[0] < oldest) start++;
      return all.slice(start);
    };
    let early: HistoryPoint<V>[] | null = [];
    let closed = false;
    const view = this.components(type, { entity });
    const valueOf = (value: unknown): V => {
      if (field !== null) return (value as Record<string, unknown>)[field] as V;
      const kept = (this._welcome.peek()?.raw["history"] as Record<string, { fields?: string[] | null }> | undefined)?.[name];
      const fields = kept?.fields;
      if (!Array.isArray(fields)) return value as V;
      return Object.fromEntries(fields.map((f) => [f, (value as Record<string, unknown>)[f]])) as V;
    };
    const stop = effect(() => {
      const value = view.get(entity).value;
      if (value === undefined || closed) return;
      const t = this._asOf.peek() ?? Date.now() / 1000;
      const point: HistoryPoint<V> = [t, valueOf(value)];
      early?.push(point);
      const now = points.peek();
      const last = now[now.length - 1];
      if (last !== undefined && last[0] > t) return; // (older than what is shown)
      points.value = bounded([...now, point]);
    });
    const fill = (): void => {
      this.historyParts<V>(name, entity, field, { seconds, timeout: options.timeout }).then(
        ({ until, points: past }) => {
          const later = (early ?? []).filter((p) => p[0] > until);
          early = null;
          if (!closed) points.value = bounded([...past, ...later]);
        },
        (e: unknown) => {
          early = null;
          if (!closed) error.value = e instanceof Pl3xusError ? e : new Pl3xusError(String(e));
        },
      );
    };
    if (this._welcome.peek() !== null) fill();
    else {
      const waiting = effect(() => {
        if (this._welcome.value === null || closed) return;
        queueMicrotask(() => {
          waiting();
          if (!closed) fill();
        });
      });
    }
    return {
      points,
      error,
      close: () => {
        if (closed) return;
        closed = true;
        stop();
        this.release(view);
      },
    };
  }

  /** Calls `listener` with every NOTICE (control requested or released, notifications...); returns a function that stops it. */
  onNotice(listener: (notice: Notice) => void): () => void {
    this.noticeListeners.add(listener);
    return () => this.noticeListeners.delete(listener);
  }
}

/**
 * The WebSocket URL of the server that served the current page (`ws://host:port/`, or `wss://`
 * for an https page): what a page served by its own server connects to.
 */
export function serverUrl(path = "/"): string {
  const here = globalThis.location;
  if (here === undefined) throw new TypeError("serverUrl() needs a page (there is no location here)");
  return `${here.protocol === "https:" ? "wss:" : "ws:"}//${here.host}${path}`;
}

/** Connects to a pl3xus_rx server (or the first of several that answers) and keeps the connection up until closed. */
export function connect(url: string | readonly string[], options: ClientOptions = {}): Pl3xusClient {
  return new Pl3xusClient(url, options);
}
