/**
 * pl3xus-rx: the typed browser client of a pl3xus_rx server.
 *
 * ```ts
 * import { connect } from "/pl3xus.js";
 * import { Position, schema } from "./types.js"; // pl3xus-rx typescript app:setup -o types.ts
 * const client = connect("ws://127.0.0.1:8080/", { schema });
 * const positions = client.components(Position); // positions.value: Map<entity, Position>
 * ```
 */
export { batch, computed, effect, signal } from "@preact/signals-core";
export type { ReadonlySignal, Signal } from "@preact/signals-core";
export * from "./client.js";
export * from "./descriptors.js";
export * from "./errors.js";
export { JsonCodec, MsgpackCodec, type Codec } from "./codec.js";
export { View, type Change, type SubscribeOptions } from "./store.js";
export { Freshness, Backoff } from "./freshness.js";
export * as protocol from "./protocol.js";
