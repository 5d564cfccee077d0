"""The message types both chat examples register (a real app would share a module too)."""

from pydantic import BaseModel, Field


class ChatMessage(BaseModel):
    """A line of chat; the server fills in ``user`` from who sent it when it relays it."""

    user: str = Field(max_length=32)
    text: str = Field(min_length=1, max_length=500)


class ServerNotice(BaseModel):
    """Something the server tells everyone (joins and leaves)."""

    text: str
