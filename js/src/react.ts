/**
 * React hooks over the pl3xus-rx client: a thin, optional module (`/pl3xus-react.js`).
 *
 * ```tsx
 * import { connect } from "/pl3xus.js";
 * import { useComponents, useMutation } from "/pl3xus-react.js";
 * import { Place, schema } from "./types.js"; // pl3xus-rx typescript app:setup -o types.ts
 * const client = connect("ws://127.0.0.1:8080/", { schema });
 * function Places() {
 *   const places = useComponents(client, Place); // ReadonlyMap<number, Place>
 *   const { mutate, error } = useMutation(client, Place);
 *   return <ul>{[...places].map(([e, p]) => <li key={e} onClick={() => mutate(e, { ...p, x: p.x + 1 })}>{p.x}</li>)}</ul>;
 * }
 * ```
 *
 * The core comes in through "./index.js" only: the build rewrites that import to
 * "./pl3xus.js", so these hooks share the page's one copy of the client (its classes, its
 * signals) instead of bundling a second one.
 *
 * Views and queries a hook holds are taken when its component mounts and let go when it
 * unmounts (a moment later, so a remount at once, as StrictMode does, keeps the same one).
 */
import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useLayoutEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactElement,
  type ReactNode,
} from "react";
import {
  ENTITY_CONTROL,
  canonical,
  Pl3xusClient,
  nameOf,
  signal,
  type CommandOptions,
  type ComponentRef,
  type ConnectionState,
  type EntityControl,
  type QueryState,
  type QueryType,
  type ReadonlySignal,
  type RequestType,
  type SubscribeOptions,
  type View,
} from "./index.js";

// ---------------------------------------------------------------------- the client in context

const ClientContext = createContext<Pl3xusClient | null>(null);

/** Props of {@link Pl3xusProvider}. */
export interface Pl3xusProviderProps {
  readonly client: Pl3xusClient;
  readonly children?: ReactNode;
}

/** Makes `client` the one {@link useClient} returns below it. */
export function Pl3xusProvider(props: Pl3xusProviderProps): ReactElement {
  if (!(props.client instanceof Pl3xusClient)) {
    throw new TypeError(
      "Pl3xusProvider: this client comes from another copy of the core; import connect from the same /pl3xus.js that pl3xus-react.js imports (not a hashed or bundled copy)",
    );
  }
  return createElement(ClientContext.Provider, { value: props.client }, props.children);
}

/** The client of the nearest {@link Pl3xusProvider}. */
export function useClient(): Pl3xusClient {
  const client = useContext(ClientContext);
  if (client === null) throw new Error("useClient() found no client: render it inside <Pl3xusProvider client={...}>");
  return client;
}

// ---------------------------------------------------------------------- signals

/** A signal's value; the component renders again when it changes. */
export function useSignal<T>(source: ReadonlySignal<T>): T {
  const subscribe = useCallback((changed: () => void) => source.subscribe(() => changed()), [source]);
  const read = useCallback(() => source.peek(), [source]);
  return useSyncExternalStore(subscribe, read, read);
}

const NO_VERSION: ReadonlySignal<number> = signal(-1);
const NO_VALUE: ReadonlySignal<undefined> = signal(undefined);
const LOADING: ReadonlySignal<QueryState<never>> = signal({ status: "loading", value: undefined, error: null });

/**
 * What `acquire` returns, held while the component is mounted with the same client and key
 * (null on the first render, before it is taken; layout effects take it before the paint).
 */
function useHeld<V>(client: Pl3xusClient, key: string, acquire: () => V, release: (held: V) => void): V | null {
  const [held, setHeld] = useState<{ readonly client: Pl3xusClient; readonly key: string; readonly value: V } | null>(null);
  useLayoutEffect(() => {
    const value = acquire();
    setHeld({ client, key, value });
    // (a moment later: a remount at once takes the same one again before it goes)
    return () => queueMicrotask(() => release(value));
  }, [client, key]);
  return held !== null && held.client === client && held.key === key ? held.value : null;
}

/** Options of {@link useComponents}. */
export type ComponentsOptions = SubscribeOptions & { readonly entity?: number };

function useView<T>(client: Pl3xusClient, type: ComponentRef<T>, options: ComponentsOptions = {}): View<T> | null {
  const key = [nameOf(type), options.entity, options.maxRateHz, options.deadband].join("\u0000");
  return useHeld(
    client,
    key,
    () => client.components(type, options),
    (view) => client.release(view as View<unknown>),
  );
}

/** A view's values as one version saw them change: a new object per version, reading the live map. */
class VersionOf<T> implements ReadonlyMap<number, T> {
  constructor(private readonly map: ReadonlyMap<number, T>) {}
  get size(): number {
    return this.map.size;
  }
  get(entity: number): T | undefined {
    return this.map.get(entity);
  }
  has(entity: number): boolean {
    return this.map.has(entity);
  }
  forEach(callback: (value: T, entity: number, map: ReadonlyMap<number, T>) => void, thisArg?: unknown): void {
    this.map.forEach((value, entity) => callback.call(thisArg, value, entity, this));
  }
  entries(): ReturnType<ReadonlyMap<number, T>["entries"]> {
    return this.map.entries();
  }
  keys(): ReturnType<ReadonlyMap<number, T>["keys"]> {
    return this.map.keys();
  }
  values(): ReturnType<ReadonlyMap<number, T>["values"]> {
    return this.map.values();
  }
  [Symbol.iterator](): ReturnType<ReadonlyMap<number, T>["entries"]> {
    return this.map.entries();
  }
}

const EMPTY: ReadonlyMap<number, never> = new Map<number, never>();

// ---------------------------------------------------------------------- components

/**
 * Every entity's value of a component type (or one entity's, with `entity`), renders again
 * when the view changes. The map is a new object each time it changes (so `memo` and effect
 * dependencies see it) and reads the view's current values; empty until the first snapshot.
 */
export function useComponents<T>(client: Pl3xusClient, type: ComponentRef<T>, options?: ComponentsOptions): ReadonlyMap<number, T> {
  const view = useView(client, type, options);
  const version = useSignal(view?.version ?? NO_VERSION);
  return useMemo(() => (view === null ? EMPTY : new VersionOf(view.map)), [view, version]);
}

/** One entity's value of a component type (undefined while it has none); renders again only when that value changes. */
export function useEntity<T>(client: Pl3xusClient, type: ComponentRef<T>, entity: number): T | undefined {
  const view = useView(client, type);
  return useSignal<T | undefined>(view === null ? NO_VALUE : view.get(entity));
}

// ---------------------------------------------------------------------- commands

interface Calls<V> {
  readonly running: number;
  readonly error: Error | null;
  readonly value: V | undefined;
}

/**
 * A command with the state of its calls: pending while any runs; error and value of the
 * latest call. The promise returned rejects too, but is marked handled, so a call left
 * unawaited (an onClick) shows its refusal in `error` only.
 */
function useCommand<A extends unknown[], V>(run: (...args: A) => Promise<V>, deps: readonly unknown[]): [(...args: A) => Promise<V>, Calls<V>] {
  const [calls, setCalls] = useState<Calls<V>>({ running: 0, error: null, value: undefined });
  const latest = useRef(0);
  const call = useCallback((...args: A): Promise<V> => {
    const id = ++latest.current;
    setCalls((c) => ({ running: c.running + 1, error: null, value: c.value }));
    let done: Promise<V>;
    try {
      done = run(...args);
    } catch (error) {
      done = Promise.reject(error);
    }
    done.then(
      (value) => setCalls((c) => ({ running: c.running - 1, error: id === latest.current ? null : c.error, value: id === latest.current ? value : c.value })),
      (error: unknown) =>
        setCalls((c) => ({ running: c.running - 1, error: id === latest.current ? (error instanceof Error ? error : new Error(String(error))) : c.error, value: c.value })),
    );
    return done;
  }, deps);
  return [call, calls];
}

/** What {@link useMutation} returns. */
export interface Mutation<T> {
  /** Writes the value; resolves once this client's views show it, rejects with the refusal (also in `error`). */
  mutate(entity: number, value: T, options?: CommandOptions): Promise<void>;
  /** True while a write is under way. */
  readonly pending: boolean;
  /** Why the latest write failed (null once one succeeds or a new one starts). */
  readonly error: Error | null;
}

/** Writes values of a component type, with the state of the writes. */
export function useMutation<T>(client: Pl3xusClient, type: ComponentRef<T>): Mutation<T> {
  const name = nameOf(type);
  const [mutate, calls] = useCommand(
    (entity: number, value: T, options?: CommandOptions) => client.mutate<T>(name, entity, value, options),
    [client, name],
  );
  const pending = calls.running > 0;
  return useMemo(() => ({ mutate, pending, error: calls.error }), [mutate, pending, calls.error]);
}

/** What {@link useRequest} returns. */
export interface RequestCall<Q, R> {
  /** Sends the request (to `entity`, for targeted types); resolves to the response, rejects with the refusal (also in `error`). */
  call(payload: Q, options?: CommandOptions & { readonly entity?: number }): Promise<R>;
  /** True while a request is under way. */
  readonly pending: boolean;
  /** Why the latest request failed (null once one succeeds or a new one starts). */
  readonly error: Error | null;
  /** The response to the latest request that succeeded. */
  readonly value: R | undefined;
}

/** Sends requests of one type, with the state of the calls. */
export function useRequest<Q, R>(client: Pl3xusClient, type: RequestType<Q, R> | string): RequestCall<Q, R> {
  const name = nameOf(type);
  const [call, calls] = useCommand(
    (payload: Q, options?: CommandOptions & { readonly entity?: number }) => client.request<Q, R>(name, payload, options),
    [client, name],
  );
  const pending = calls.running > 0;
  return useMemo(() => ({ call, pending, error: calls.error, value: calls.value }), [call, pending, calls.error, calls.value]);
}

// ---------------------------------------------------------------------- queries

/**
 * A query's answer, asked again when the server invalidates it or the client reconnects.
 * `params` are compared by value: a new object with the same fields asks nothing new.
 */
export function useQuery<P, R>(client: Pl3xusClient, type: QueryType<P, R> | string, params: P): QueryState<R> {
  const key = `${nameOf(type)}\u0000${canonical(params)}`;
  const handle = useHeld(
    client,
    key,
    () => client.query<P, R>(type, params),
    (held) => held.close(),
  );
  return useSignal<QueryState<R>>(handle?.state ?? LOADING);
}

// ---------------------------------------------------------------------- control and connection

/** What {@link useControl} returns. */
export interface Control {
  /** The connection id that holds control of the entity, or null. */
  readonly holder: number | null;
  /** The name of the holder's identity (null for an anonymous holder, or none). */
  readonly by: string | null;
  /** True when this client holds it. */
  readonly mine: boolean;
  /** Takes control (rejects with Forbidden if another holds it; also in `error`). */
  take(options?: CommandOptions): Promise<void>;
  /** Releases control. */
  release(options?: CommandOptions): Promise<void>;
  /** True while a take or release is under way. */
  readonly pending: boolean;
  /** Why the latest take or release failed. */
  readonly error: Error | null;
}

/** Who holds control of an entity, and taking and releasing it. */
export function useControl(client: Pl3xusClient, entity: number): Control {
  const view = useView<EntityControl>(client, ENTITY_CONTROL);
  const control = useSignal<EntityControl | undefined>(view === null ? NO_VALUE : view.get(entity));
  const welcome = useSignal(client.welcome);
  const [act, calls] = useCommand(
    (take: boolean, options?: CommandOptions) => (take ? client.takeControl(entity, options) : client.releaseControl(entity, options)),
    [client, entity],
  );
  const holder = control?.holder ?? null;
  const by = control?.by ?? null;
  const mine = holder !== null && holder === (welcome?.connectionId ?? null);
  const pending = calls.running > 0;
  return useMemo(
    () => ({ holder, by, mine, take: (options?: CommandOptions) => act(true, options), release: (options?: CommandOptions) => act(false, options), pending, error: calls.error }),
    [holder, by, mine, act, pending, calls.error],
  );
}

/** What {@link useConnection} returns. */
export interface Connection {
  readonly state: ConnectionState;
  /** True while the data may not be current. */
  readonly stale: boolean;
  /** Seconds the data is old (v2 links; null on v1 or before the first frame): updated 4 times a second. */
  readonly age: number | null;
}

/** Where the connection stands; renders again when any of it changes (the age: 4 times a second). */
export function useConnection(client: Pl3xusClient): Connection {
  const state = useSignal(client.state);
  const stale = useSignal(client.stale);
  const age = useSignal(client.age);
  return useMemo(() => ({ state, stale, age }), [state, stale, age]);
}
