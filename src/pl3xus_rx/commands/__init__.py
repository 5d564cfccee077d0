"""The write path: every client command, from frame to effects. No I/O.

:class:`Commands` takes a client's command frame (it parses it), who sent it and the time,
and returns what
must happen (frames to send, replies to hold for a flush, broadcasts, handlers to start).
Every command that targets an entity passes :class:`Gate`, the one access decision (see
``_gate``); the rooms handle mutations, control, requests/queries/messages and
spawn/despawn (client-spawned entities remember their :class:`Owner`, whose quotas bound
them). The server (``SyncServer``) is the I/O shell around it.
"""

from ._book import ControlBook, Displaced, Expired, Granted, Moved, Refused
from ._dispatch import Commands
from ._effects import Broadcast, Effect, HandlerTimedOut, Hold, Send, Start
from ._gate import Authorizer, DespawnPolicy, Gate, SpawnPolicy
from ._quota import RESTORED_ANONYMOUS, Holdings, Owner

__all__ = [
    "RESTORED_ANONYMOUS",
    "Authorizer",
    "Broadcast",
    "Commands",
    "ControlBook",
    "DespawnPolicy",
    "Displaced",
    "Effect",
    "Expired",
    "Gate",
    "Granted",
    "HandlerTimedOut",
    "Hold",
    "Holdings",
    "Moved",
    "Owner",
    "Refused",
    "Send",
    "SpawnPolicy",
    "Start",
]
