"""The two encodings of one protocol: msgpack (binary frames) and JSON (text frames)."""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable
from typing import Any, Final, Protocol

import msgpack

from ..exceptions import DecodeError, WrongFrameType

__all__ = [
    "BYTES_PER_CONTAINER",
    "CONTAINER_ALLOWANCE",
    "JSON_SUBPROTOCOL",
    "MSGPACK_SUBPROTOCOL",
    "SUBPROTOCOLS",
    "Codec",
    "JsonCodec",
    "LoneSurrogate",
    "MsgpackCodec",
    "JSON_SUBPROTOCOL_V2",
    "MSGPACK_SUBPROTOCOL_V2",
    "codec_for_subprotocol",
    "offered_subprotocols",
    "container_budget",
    "json_encode",
    "msgpack_encode",
    "WireData",
]

WireData = bytes | str | tuple[bytes, ...]
"""A frame encoded for one connection: msgpack ``bytes``, JSON ``str``, or msgpack as a
tuple of chunks whose concatenation is the frame (sent as one message, so that a body shared
by many connections is not copied for each before the transport frames it)."""

MSGPACK_SUBPROTOCOL: Final = "pl3xus.msgpack.v1"
JSON_SUBPROTOCOL: Final = "pl3xus.json.v1"
MSGPACK_SUBPROTOCOL_V2: Final = "pl3xus.msgpack.v2"
"""msgpack, protocol version 2: SYNC frames say how old their data is, idle connections
get BEACONs, clients may acknowledge (docs/protocol.md, "Versioning")."""
JSON_SUBPROTOCOL_V2: Final = "pl3xus.json.v2"
"""JSON, protocol version 2."""
SUBPROTOCOLS: Final = (
    MSGPACK_SUBPROTOCOL_V2,
    JSON_SUBPROTOCOL_V2,
    MSGPACK_SUBPROTOCOL,
    JSON_SUBPROTOCOL,
)
"""Every subprotocol a server speaks, newest first."""
_VERSIONS: Final = {
    MSGPACK_SUBPROTOCOL: (True, 1),
    JSON_SUBPROTOCOL: (False, 1),
    MSGPACK_SUBPROTOCOL_V2: (True, 2),
    JSON_SUBPROTOCOL_V2: (False, 2),
}


def offered_subprotocols(binary: bool) -> tuple[str, ...]:
    """What a client offers for an encoding, newest first (a v1 server picks v1)."""
    return tuple(sp for sp in SUBPROTOCOLS if _VERSIONS[sp][0] is binary)


class Codec(Protocol):
    """Turns frames (lists of plain values) into WebSocket payloads and back."""

    subprotocol: str
    binary: bool
    version: int
    """The protocol version the subprotocol names (1 or 2)."""

    def encode(self, frame: list[Any]) -> bytes | str:
        """Encode one frame."""
        ...

    def decode(self, data: bytes | str, *, untrusted: bool = False) -> Any:
        """Decode one WebSocket message into plain values.

        With ``untrusted`` (a server reading its clients), a document holding more maps and
        arrays than :func:`container_budget` allows for its size is refused, so that what
        it decodes to stays within a small multiple of the bytes received.

        Raises:
            DecodeError: the data is not a complete, valid document, or over the budget.
            WrongFrameType: text arrived on a binary codec or the reverse.
        """
        ...


BYTES_PER_CONTAINER: Final = 8
CONTAINER_ALLOWANCE: Final = 64


def container_budget(size: int) -> int:
    """The maps and arrays an untrusted document of ``size`` bytes may hold: one per
    :data:`BYTES_PER_CONTAINER` bytes, plus :data:`CONTAINER_ALLOWANCE`. (An empty map is
    one byte of msgpack but some 70 bytes of Python: without a budget a 16 MiB frame of them
    decodes to over a gigabyte.)"""
    return CONTAINER_ALLOWANCE + size // BYTES_PER_CONTAINER


def _over_budget(kind: str, size: int, unit: str) -> DecodeError:
    return DecodeError(
        f"{kind} frame ({size} {unit}) holds more than {container_budget(size)} maps and "
        f"arrays (limit: one per {BYTES_PER_CONTAINER} bytes, plus {CONTAINER_ALLOWANCE})"
    )


class _Budget(Exception):
    """Raised inside msgpack's hooks when a document holds too many containers."""


def _counting_hooks(budget: int) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    left = [budget]

    def hook(container: Any) -> Any:
        left[0] -= 1
        if left[0] < 0:
            raise _Budget
        return container

    return hook, hook


_packers = threading.local()  # a Packer's buffer must not be shared between threads


def _packer() -> Callable[[Any], bytes]:
    try:
        pack: Callable[[Any], bytes] = _packers.pack
    except AttributeError:
        pack = _packers.pack = msgpack.Packer(use_bin_type=True).pack
    return pack


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _map_leaves(obj: Any, leaf: Callable[[Any], Any]) -> Any:
    """``obj`` with ``leaf`` applied to every value that is not a dict, list or tuple."""
    if isinstance(obj, dict):
        return {k: _map_leaves(v, leaf) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_map_leaves(v, leaf) for v in obj]
    return leaf(obj)


def _small_int(value: Any) -> Any:
    return str(value) if type(value) is int and not _INT_MIN <= value <= _INT_MAX else value


def msgpack_encode(obj: Any) -> bytes:
    """msgpack that never fails on a big integer: one outside msgpack's 64 bits travels as
    its decimal string, which pydantic reads back into int fields."""
    pack = _packer()
    try:
        return pack(obj)
    except OverflowError:  # the rare case: only then a second pass
        return pack(_map_leaves(obj, _small_int))


class MsgpackCodec:
    """msgpack in binary WebSocket frames (the default)."""

    subprotocol = MSGPACK_SUBPROTOCOL
    binary = True
    version = 1

    def __init__(self, version: int = 1) -> None:
        self.version = version
        self.subprotocol = MSGPACK_SUBPROTOCOL_V2 if version == 2 else MSGPACK_SUBPROTOCOL

    def encode(self, frame: list[Any]) -> bytes:
        """Encode one frame as msgpack (see :func:`msgpack_encode`)."""
        return msgpack_encode(frame)

    def decode(self, data: bytes | str, *, untrusted: bool = False) -> Any:
        """Decode one msgpack document; see :meth:`Codec.decode`."""
        if isinstance(data, str):
            raise WrongFrameType(
                "text frame received on a msgpack connection; send binary frames or "
                f"negotiate the {JSON_SUBPROTOCOL!r} subprotocol"
            )
        try:
            if untrusted and len(data) > CONTAINER_ALLOWANCE:
                list_hook, object_hook = _counting_hooks(container_budget(len(data)))
                return msgpack.unpackb(
                    data,
                    raw=False,
                    strict_map_key=False,
                    list_hook=list_hook,
                    object_hook=object_hook,
                )
            return msgpack.unpackb(data, raw=False, strict_map_key=False)
        except _Budget:
            raise _over_budget("msgpack", len(data), "bytes") from None
        except msgpack.ExtraData as exc:
            raise DecodeError(
                f"msgpack frame has {len(exc.extra)} trailing bytes after one document"
            ) from exc
        except (ValueError, msgpack.UnpackException) as exc:
            text = str(exc) or "invalid msgpack type byte"
            # msgpack reports a cut-off frame as "incomplete input", or as a length prefix
            # larger than what is left ("N exceeds max_array_len(M)").
            if "incomplete" in text or "exceeds max_" in text:
                raise DecodeError(f"truncated msgpack frame ({len(data)} bytes): {text}") from exc
            raise DecodeError(f"undecodable msgpack frame ({len(data)} bytes): {text}") from exc
        except Exception as exc:  # msgpack raises a handful of other types on garbage
            raise DecodeError(
                f"undecodable msgpack frame ({len(data)} bytes): {type(exc).__name__}: {exc}"
            ) from exc


_strict_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return value


def json_encode(obj: Any) -> str:
    """Compact JSON that every parser accepts: NaN and ±Infinity, which JSON cannot
    express (``JSON.parse`` rejects them), become the strings ``"NaN"``, ``"Infinity"`` and
    ``"-Infinity"``, which pydantic reads back into float fields."""
    try:
        return _strict_json(obj)
    except ValueError:  # a non-finite float somewhere (the rare case: only then a second pass)
        return _strict_json(_map_leaves(obj, _finite))


class JsonCodec:
    """JSON in text WebSocket frames, for browsers and tools without msgpack."""

    subprotocol = JSON_SUBPROTOCOL
    binary = False
    version = 1

    def __init__(self, version: int = 1) -> None:
        self.version = version
        self.subprotocol = JSON_SUBPROTOCOL_V2 if version == 2 else JSON_SUBPROTOCOL

    def encode(self, frame: list[Any]) -> str:
        """Encode one frame as compact JSON text (see :func:`json_encode`)."""
        return json_encode(frame)

    def decode(self, data: bytes | str, *, untrusted: bool = False) -> Any:
        """Decode one JSON document; see :meth:`Codec.decode`."""
        if not isinstance(data, str):
            raise WrongFrameType(
                "binary frame received on a JSON connection; send text frames or negotiate "
                f"the {MSGPACK_SUBPROTOCOL!r} subprotocol"
            )
        # (brackets inside strings count too: a bound, found without parsing)
        if untrusted and data.count("[") + data.count("{") > container_budget(len(data)):
            raise _over_budget("JSON", len(data), "characters")
        try:
            obj = json.loads(data, parse_constant=_no_constants)
        except json.JSONDecodeError as exc:
            kind = "truncated" if exc.pos >= len(data) else "undecodable"
            raise DecodeError(
                f"{kind} JSON frame ({len(data)} characters): {exc.msg} at position {exc.pos}"
            ) from exc
        except RecursionError as exc:
            raise DecodeError("JSON frame nests too deeply") from exc
        except ValueError as exc:  # e.g. an integer longer than Python converts (4,300 digits)
            raise DecodeError(f"undecodable JSON frame ({len(data)} characters): {exc}") from exc
        if "\\u" in data and _SURROGATE_ESCAPE.search(data):  # (only these make one)
            where = lone_surrogate(obj)
            if where is not None:
                raise LoneSurrogate(
                    f"JSON frame holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape "
                    f"without its pair) at {where or '<root>'}: that is not Unicode text, and "
                    "no encoding could carry it on",
                    obj,
                    where,
                )
        return obj


class LoneSurrogate(DecodeError):
    """A JSON frame that decoded, but holds a string with a lone UTF-16 surrogate (at the
    dotted path ``where`` of ``frame``): a command among them is answered, naming the
    field (:func:`~pl3xus_rx.protocol.undecodable_text_reply`); anything else is refused."""

    def __init__(self, message: str, frame: Any, where: str) -> None:
        super().__init__(message)
        self.frame = frame
        self.where = where


def _no_constants(name: str) -> Any:
    raise DecodeError(
        f"JSON frame holds the bare token {name}: JSON has no NaN or infinities; send the "
        'strings "NaN", "Infinity" or "-Infinity"'
    )


def lone_surrogate(obj: Any) -> str | None:
    """The dotted path of the first string (or map key) in ``obj`` that holds a lone UTF-16
    surrogate (``""`` for the root itself), or ``None`` if there is none. The path is made
    only for what is found (each step a link to its parent: a wide frame under a long key
    costs no copies of it), and each of its keys is cut to 40 characters."""
    Trail = tuple[Any, Any] | None  # (parent trail, key or index)
    stack: list[tuple[Trail, Any]] = [(None, obj)]
    while stack:
        trail, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return _path(trail)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and _SURROGATE.search(key):
                    return _path(trail) or "<key>"
                stack.append(((trail, key), item))
        elif isinstance(value, list):
            stack.extend(
                ((trail, i), item)
                for i, item in enumerate(value)
                if type(item) in _WALKED  # (numbers and nulls hold no text: not visited)
            )
    return None


_WALKED = (str, list, dict)


def _path(trail: tuple[Any, Any] | None) -> str:
    steps: list[str] = []
    while trail is not None:
        trail, key = trail
        text = str(key) if not isinstance(key, str) else key.encode("ascii", "replace").decode()
        steps.append(text if len(text) <= 40 else f"{text[:37]}...")
    return ".".join(reversed(steps))


_SURROGATE = re.compile("[\ud800-\udfff]")
# a \\u escape of a surrogate code point in JSON text (a valid pair matches too)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def codec_for_subprotocol(subprotocol: str | None) -> Codec:
    """The codec for a negotiated subprotocol; no subprotocol means msgpack.

    Raises:
        ValueError: the subprotocol is not one of :data:`SUBPROTOCOLS`.
    """
    if subprotocol is None:
        return MsgpackCodec()
    found = _VERSIONS.get(subprotocol)
    if found is not None:
        binary, version = found
        return MsgpackCodec(version) if binary else JsonCodec(version)
    raise ValueError(f"unknown subprotocol {subprotocol!r}; expected one of {SUBPROTOCOLS}")
