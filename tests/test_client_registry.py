"""ClientTypeRegistry: immutable, checked at build()."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from client_sync import ClientTypeRegistry
from pl3xus_rx import DuplicateRegistration, NotRegistered
from pl3xus_rx.protocol import schema_hash


class Position(BaseModel):
    x: float
    y: float


class Velocity(BaseModel):
    dx: float


def test_build_and_look_up() -> None:
    reg = ClientTypeRegistry.builder().register(Position).register(Velocity, name="vel").build()
    assert reg.name_of(Position) == "Position" and reg.name_of(Velocity) == "vel"
    assert reg.model_of("vel") is Velocity and reg.model_of("nope") is None
    assert reg.hashes == {"Position": schema_hash(Position), "vel": schema_hash(Velocity)}
    assert Position in reg and len(reg) == 2 and list(reg) == [Position, Velocity]
    with pytest.raises(TypeError):
        reg.hashes["x"] = "y"  # type: ignore[index]


def test_unregistered_type_names_the_fix() -> None:
    reg = ClientTypeRegistry.builder().register(Position).build()
    with pytest.raises(NotRegistered, match=r"add `\.register\(Velocity\)` to the builder"):
        reg.name_of(Velocity)


def test_two_types_under_one_name_fail_at_build() -> None:
    builder = ClientTypeRegistry.builder().register(Position).register(Velocity, name="Position")
    with pytest.raises(DuplicateRegistration, match="'Position'"):
        builder.build()
    with pytest.raises(DuplicateRegistration, match="twice"):
        ClientTypeRegistry.builder().register(Position).register(Position, name="p").build()
    # the same type twice under the same name is fine
    assert len(ClientTypeRegistry.builder().register(Position).register(Position).build()) == 1
