// A WebSocket stand-in: the test plays the server, frame by frame.
import { JsonCodec, MsgpackCodec, type Codec } from "../src/codec.js";
import type { WebSocketLike } from "../src/client.js";
import { FrameKind } from "../src/protocol.js";

export class FakeSocket implements WebSocketLike {
  binaryType = "blob";
  protocol = "";
  readyState = 0;
  readonly sent: unknown[][] = [];
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  closed: { code: number | undefined; reason: string | undefined } | null = null;

  constructor(readonly url: string, readonly protocols: string[], readonly codec: Codec) {}

  send(data: string | Uint8Array): void {
    this.sent.push(this.codec.decode(typeof data === "string" ? data : data) as unknown[]);
  }
  close(code?: number, reason?: string): void {
    this.closed = { code, reason };
    this.readyState = 3;
  }

  /** The server side: deliver a frame. */
  deliver(frame: unknown[]): void {
    this.onmessage?.({ data: this.codec.encode(frame) });
  }
  /** The server side: raw bytes or text. */
  deliverRaw(data: unknown): void {
    this.onmessage?.({ data });
  }
  /** The server side: accept and welcome. */
  welcome(extra: Record<string, unknown> = {}, version = 2): void {
    this.readyState = 1;
    this.protocol = this.protocols[0] ?? "";
    this.deliver([FrameKind.WELCOME, { version, connection_id: 7, messages: [], components: [[0, "Position", "h0", ["x", "y"]], [1, "EntityControl", "h1", ["holder", "by"]]], identity: { name: "anonymous", roles: [], anonymous: true }, as_of_interval: 0.5, ...extra }]);
  }
  /** The server side: drop the connection. */
  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** Frames of one kind the client sent. */
  sentOf(kind: number): unknown[][] {
    return this.sent.filter((f) => f[0] === kind);
  }
}

export class Sockets {
  readonly all: FakeSocket[] = [];
  constructor(readonly encoding: "msgpack" | "json" = "msgpack") {}
  readonly factory = (url: string, protocols: string[]): FakeSocket => {
    const s = new FakeSocket(url, protocols, this.encoding === "json" ? new JsonCodec() : new MsgpackCodec());
    this.all.push(s);
    return s;
  };
  get last(): FakeSocket {
    const s = this.all[this.all.length - 1];
    if (s === undefined) throw new Error("no socket yet");
    return s;
  }
}

/** Lets timers of 0 ms and promise callbacks run. */
export function tick(ms = 5): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until `test` holds, at most `ms`. */
export async function until(test: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await tick(2);
  }
}
