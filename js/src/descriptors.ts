/**
 * What a client knows of a type before it connects: its wire name and schema hash, with the
 * TypeScript type of its values carried along (phantom fields, never set at run time).
 *
 * `pl3xus-rx typescript MODULE:FUNCTION -o types.ts` writes one such constant per type the
 * server registers, with the same name as the type's interface, and a `schema` listing them.
 * The generated file declares structurally identical interfaces, so it needs no import.
 */

/** A synced component type. */
export interface ComponentType<T> {
  readonly kind: "component";
  readonly name: string;
  readonly hash: string;
  readonly fields: readonly string[];
  readonly __value?: T;
}

/** A request type and its response. */
export interface RequestType<Q, R> {
  readonly kind: "request";
  readonly name: string;
  readonly hash: string;
  readonly responseHash: string;
  readonly targeted: boolean;
  readonly __request?: Q;
  readonly __response?: R;
}

/** A query type: its parameters and its answer. */
export interface QueryType<P, R> {
  readonly kind: "query";
  readonly name: string;
  readonly hash: string;
  readonly responseHash: string;
  readonly __params?: P;
  readonly __response?: R;
}

/** A message type the server publishes (MESSAGE frames). */
export interface MessageType<T> {
  readonly kind: "message";
  readonly name: string;
  readonly hash: string;
  readonly __value?: T;
}

/** A one-way message type a client sends (SEND frames). */
export interface OneWayType<T> {
  readonly kind: "one_way";
  readonly name: string;
  readonly hash: string;
  readonly targeted: boolean;
  readonly __value?: T;
}

/** Every type of an application, as the generated `schema` constant lists them. */
export interface Schema {
  readonly components?: readonly ComponentType<unknown>[];
  readonly requests?: readonly RequestType<unknown, unknown>[];
  readonly queries?: readonly QueryType<unknown, unknown>[];
  readonly messages?: readonly MessageType<unknown>[];
  readonly oneWay?: readonly OneWayType<unknown>[];
}

/** A type named by its descriptor or, untyped, by its wire name. */
export type ComponentRef<T> = ComponentType<T> | string;

/** The wire name of a descriptor or a name. */
export function nameOf(ref: { readonly name: string } | string): string {
  return typeof ref === "string" ? ref : ref.name;
}

/** `EntityControl`: who holds exclusive control of an entity (synced by every server). */
export interface EntityControl {
  /** The connection id that took control last, or null. */
  readonly holder: number | null;
  /** The name of the holder's authenticated identity (null for an anonymous holder). */
  readonly by: string | null;
}

/** The descriptor of `EntityControl` (its hash is checked against the server's own). */
export const ENTITY_CONTROL = "EntityControl";
