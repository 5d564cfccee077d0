/**
 * The errors of the pl3xus-rx client: one hierarchy, rooted at {@link Pl3xusError}.
 *
 * A command's promise rejects with a {@link CommandRejected} subclass when the server answered
 * with an error status, {@link CommandTimeout} when no answer came in time, and
 * {@link ConnectionLost} when the connection ended first (the server may have applied it).
 */
import { Status } from "./protocol.js";

/** One field error of a `validation_error` answer: where (`loc`, a dotted path), what, which kind. */
export interface FieldError {
  readonly loc: string;
  readonly msg: string;
  readonly type: string;
}

/** Every error this package raises or reports. */
export class Pl3xusError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The server answered a command with an error status (`forbidden`, `not_found`, ...). */
export class CommandRejected extends Pl3xusError {
  /** The REPLY's status string. */
  readonly status: string;
  /** The server's explanation. */
  readonly reason: string;
  /** Field errors (for `validation_error`). */
  readonly errors: readonly FieldError[];

  constructor(status: string, reason: string, errors: readonly FieldError[] = []) {
    super(`${status}: ${reason}`);
    this.status = status;
    this.reason = reason;
    this.errors = errors;
  }
}

/** Not allowed: a read-only type, a policy, or control held by someone else. */
export class Forbidden extends CommandRejected {}
/** The entity or type does not exist (or is not visible to this client). */
export class NotFound extends CommandRejected {}
/** The value failed validation on the server; `errors` names the fields. */
export class InvalidValue extends CommandRejected {}
/** The server's handler raised; the server carries on. */
export class ServerError extends CommandRejected {}
/** The server's handler did not finish within its time limit and was cancelled. */
export class HandlerTimeout extends CommandRejected {}

/** The error class for a REPLY status (an unknown status is a plain {@link CommandRejected}). */
export function rejection(status: string, reason: string, errors: readonly FieldError[]): CommandRejected {
  switch (status) {
    case Status.FORBIDDEN:
      return new Forbidden(status, reason, errors);
    case Status.NOT_FOUND:
      return new NotFound(status, reason, errors);
    case Status.VALIDATION_ERROR:
      return new InvalidValue(status, reason, errors);
    case Status.INTERNAL_ERROR:
      return new ServerError(status, reason, errors);
    case Status.TIMEOUT:
      return new HandlerTimeout(status, reason, errors);
    default:
      return new CommandRejected(status, reason, errors);
  }
}

/** No answer to a command within its timeout. The server may still apply it. */
export class CommandTimeout extends Pl3xusError {}

/** The connection ended (or was not open) before the command was answered. */
export class ConnectionLost extends Pl3xusError {}

/** The client was closed; nothing more will be sent or received. */
export class ClientClosed extends Pl3xusError {}

/** A frame from the server that this client cannot read (wrong shape, unknown kind, too big). */
export class ProtocolError extends Pl3xusError {
  /** The frame kind concerned, when it could be told. */
  readonly kind: number | null;
  constructor(message: string, kind: number | null = null) {
    super(message);
    this.kind = kind;
  }
}

/** An ERROR frame from the server (`code`, `type`, `field`, `limit` as it sent them). */
export class RemoteError extends Pl3xusError {
  readonly code: string;
  readonly body: Readonly<Record<string, unknown>>;
  constructor(code: string, message: string, body: Readonly<Record<string, unknown>>) {
    super(`${code}: ${message}`);
    this.code = code;
    this.body = body;
  }
}

/** The two ends disagree on a type: one lacks it, or its schema hash differs. */
export class SchemaMismatch extends Pl3xusError {
  readonly typeName: string;
  readonly localHash: string | null;
  readonly remoteHash: string | null;
  readonly detail: string | null;
  constructor(typeName: string, localHash: string | null, remoteHash: string | null, detail: string | null = null) {
    let text: string;
    if (remoteHash === null) text = `${typeName} is registered here but the server does not know it`;
    else if (localHash === null) text = `the server registers ${typeName} but this client does not`;
    else
      text =
        `${typeName} has schema hash ${localHash} here but ${remoteHash} on the server; ` +
        "regenerate the types from the server's models";
    super(detail ? `${text} (${detail})` : text);
    this.typeName = typeName;
    this.localHash = localHash;
    this.remoteHash = remoteHash;
    this.detail = detail;
  }
}

/** A `message_rejected` notice: a one-way message the server refused. */
export class MessageRejected extends Pl3xusError {
  readonly type: string;
  readonly entity: number | null;
  readonly status: string;
  readonly errors: readonly FieldError[];
  constructor(type: string, entity: number | null, status: string, reason: string, errors: readonly FieldError[]) {
    super(`${type} was refused: ${status}: ${reason}`);
    this.type = type;
    this.entity = entity;
    this.status = status;
    this.errors = errors;
  }
}

/** The handshake was refused or the server could not be reached. */
export class ConnectFailed extends Pl3xusError {}
