"""A tiny NiceGUI app for tests/test_nicegui.py, run as a subprocess against a SyncServer the
test controls: ``python tests/nicegui_app.py ws://127.0.0.1:PORT/ --port HPORT``, then open
``/?gone=ENTITY&fast=ENTITY``.

Its page binds a type the server does not sync (:class:`Motor`: a label, a table and a
chart), one entity's :class:`Sensor` the test despawns (``id=gone``), and another's that the
test changes at 50 Hz, drawn at most twice a second (``id=fast``)."""

from __future__ import annotations

import argparse

from nicegui import ui
from pydantic import BaseModel

from client_sync import ClientTypeRegistry
from client_sync.nicegui import SharedSync


class Sensor(BaseModel):
    """Synced by the test's server."""

    value: float
    label: str = ""


class Motor(BaseModel):
    """Registered here, never synced by the test's server."""

    rpm: float = 0.0


REGISTRY = ClientTypeRegistry.builder().register(Sensor).register(Motor).build()
FAST_RATE_HZ = 2.0


def build(url: str) -> None:
    """Declare the page."""
    shared = SharedSync(url, REGISTRY)

    @ui.page("/")
    def index(gone: int, fast: int) -> None:
        view = shared.bindings()
        view.connection_badge().props("id=link")
        view.notifications(per_second=2)
        view.field_text(ui.label().props("id=motor"), Motor, fast)
        view.table(Motor, page_size=3).element.props("id=motor-table")
        view.chart(Motor, fast, "rpm").classes("w-96 h-40").props("id=motor-chart")
        view.field_text(ui.label().props("id=gone"), Sensor, gone, lambda s: f"value {s.value:g}")
        view.text(
            ui.label().props("id=fast"),
            view.provider.entity_component(Sensor, fast),
            lambda s: f"{s.value:g}",
            rate_hz=FAST_RATE_HZ,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    build(args.url)
    ui.run(host="127.0.0.1", port=args.port, reload=False, show=False, title="bindings")


if __name__ in {"__main__", "__mp_main__"}:
    main()
