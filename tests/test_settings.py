"""NetworkSettings validation."""

from __future__ import annotations

import pytest

from pl3xus_rx import NetworkSettings, SettingsError


def test_defaults_match_the_pl3xus_seed() -> None:
    s = NetworkSettings()
    assert s.message_limit(server=True) == 4 * 1024 * 1024
    assert s.message_limit(server=False) == 64 * 1024 * 1024
    assert s.frame_limit(server=True) == 4 * 1024 * 1024
    assert s.frame_limit(server=False) == 16 * 1024 * 1024
    assert s.channel_capacity == 500
    assert s.channel_warning_threshold == 80
    assert s.channel_warning_depth == 400
    assert s.channel_full_policy == "close"
    assert s.compression is False
    assert s.backlog >= 1024


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("channel_capacity", 0),
        ("channel_warning_threshold", 101),
        ("max_message_size", -1),
        ("channel_full_policy", "block"),
        ("rate_limit_per_second", 0),
        ("ping_interval", -5),
        ("max_connections", 0),
    ],
)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(SettingsError, match=field) as info:
        NetworkSettings(**{field: value})
    assert isinstance(info.value, ValueError)  # ordinary except clauses still work
    assert repr(value) in str(info.value)


def test_unknown_field_is_refused() -> None:
    with pytest.raises(SettingsError, match="channel_capacty"):
        NetworkSettings(channel_capacty=10)


def test_frame_size_cannot_exceed_message_size() -> None:
    with pytest.raises(SettingsError, match="max_frame_size"):
        NetworkSettings(max_message_size=1000, max_frame_size=2000)


def test_settings_are_immutable() -> None:
    s = NetworkSettings()
    with pytest.raises(ValueError):
        s.channel_capacity = 3  # type: ignore[misc]
    assert s.model_copy(update={"channel_capacity": 3}).channel_capacity == 3


def test_sync_settings_are_checked_the_same_way() -> None:
    from pl3xus_rx import SyncSettings

    assert SyncSettings().max_update_rate_hz == 60
    with pytest.raises(SettingsError, match=r"invalid SyncSettings: max_update_rate_hz.*0"):
        SyncSettings(max_update_rate_hz=0)


def test_a_message_limit_alone_is_enough() -> None:
    settings = NetworkSettings(max_message_size=4096)  # the frame limit follows it
    assert settings.frame_limit(server=True) == settings.frame_limit(server=False) == 4096
    assert NetworkSettings(max_frame_size=1024).frame_limit(server=True) == 1024
