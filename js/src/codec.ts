/**
 * The two encodings of the wire (docs/protocol.md, "Transport and encodings"): msgpack in
 * binary frames, JSON in text frames. Both carry the same arrays.
 */
import { Decoder, Encoder } from "@msgpack/msgpack";
import { JSON_SUBPROTOCOL, JSON_SUBPROTOCOL_V2, MSGPACK_SUBPROTOCOL, MSGPACK_SUBPROTOCOL_V2 } from "./protocol.js";

/** How frames are turned into WebSocket messages and back. */
export interface Codec {
  /** "msgpack" or "json". */
  readonly encoding: "msgpack" | "json";
  /** Subprotocol names offered at the handshake, newest first. */
  readonly subprotocols: readonly string[];
  encode(frame: readonly unknown[]): string | Uint8Array;
  /** Decodes one message; throws on bytes or text that are not one document. */
  decode(data: unknown): unknown;
}

/** The largest message this client accepts from its server (as the Python client: 64 MiB). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

function nonFinite(_key: string, value: unknown): unknown {
  // JSON has no NaN or infinities: the wire carries them as strings (docs/protocol.md).
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  return value;
}

/** The JSON encoding (text frames). */
export class JsonCodec implements Codec {
  readonly encoding = "json" as const;
  readonly subprotocols = [JSON_SUBPROTOCOL_V2, JSON_SUBPROTOCOL] as const;

  encode(frame: readonly unknown[]): string {
    return JSON.stringify(frame, nonFinite);
  }

  decode(data: unknown): unknown {
    if (typeof data !== "string") throw new TypeError("a binary frame on a JSON connection");
    if (data.length > MAX_MESSAGE_BYTES) throw new RangeError(`a frame of ${data.length} characters exceeds ${MAX_MESSAGE_BYTES}`);
    return JSON.parse(data);
  }
}

/** The msgpack encoding (binary frames). Integers up to 2^53 read back exactly. */
export class MsgpackCodec implements Codec {
  readonly encoding = "msgpack" as const;
  readonly subprotocols = [MSGPACK_SUBPROTOCOL_V2, MSGPACK_SUBPROTOCOL] as const;
  private readonly encoder = new Encoder({ ignoreUndefined: true });
  private readonly decoder = new Decoder({ maxStrLength: MAX_MESSAGE_BYTES, maxBinLength: MAX_MESSAGE_BYTES });

  encode(frame: readonly unknown[]): Uint8Array {
    return this.encoder.encode(frame);
  }

  decode(data: unknown): unknown {
    let bytes: Uint8Array;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else throw new TypeError("a text frame on a msgpack connection");
    if (bytes.byteLength > MAX_MESSAGE_BYTES) throw new RangeError(`a frame of ${bytes.byteLength} bytes exceeds ${MAX_MESSAGE_BYTES}`);
    return this.decoder.decode(bytes);
  }
}

/** The codec for an encoding name. */
export function codecFor(encoding: "msgpack" | "json"): Codec {
  return encoding === "json" ? new JsonCodec() : new MsgpackCodec();
}
