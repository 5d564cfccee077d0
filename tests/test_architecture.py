"""The house's rules, checked: one wire vocabulary, the client's sans-I/O core imports no
server, the docs' frame tables match the code, and the exception tree is what it says."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pl3xus_rx.exceptions as exceptions_module
from pl3xus_rx.exceptions import Pl3xusError, ProtocolError
from pl3xus_rx.protocol import ControlAction, ErrorCode, FrameKind, NoticeKind, Status

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (ROOT / "src" / "pl3xus_rx", ROOT / "src" / "client_sync")
VOCABULARY = ROOT / "src" / "pl3xus_rx" / "protocol"

KIND_NUMBERS = {int(k) for k in FrameKind}
WORDS = {str(s) for s in (*Status, *NoticeKind, *ControlAction)}
# Names under which code holds a frame kind or a status it is about to compare.
KIND_HOLDERS = re.compile(r"^(kind|status|action|code|frame\[0\]|obj\[0\]|f\[0\]|\w+\.kind)$")


def _holder(node: ast.expr) -> bool:
    return bool(KIND_HOLDERS.match(ast.unparse(node)))


def vocabulary_literals(source: str) -> list[str]:
    """Where ``source`` spells a frame kind or a status as a bare literal: a frame built as
    a list that starts with a kind number, or a kind / status compared with a literal."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.List) and len(node.elts) >= 2:
            first = node.elts[0]
            if (
                isinstance(first, ast.Constant)
                and type(first.value) is int
                and first.value in KIND_NUMBERS
                and not all(isinstance(e, ast.Constant) for e in node.elts)
            ):
                found.append(
                    f"line {node.lineno}: frame built with a bare kind: {ast.unparse(node)}"
                )
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            literals = [
                s
                for s in sides
                if isinstance(s, ast.Constant)
                and (
                    (type(s.value) is int and s.value in KIND_NUMBERS)
                    or (isinstance(s.value, str) and s.value in WORDS)
                )
            ]
            if literals and any(_holder(s) for s in sides):
                found.append(
                    f"line {node.lineno}: compared with a bare literal: {ast.unparse(node)}"
                )
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "code"
                    and isinstance(value, ast.Constant)
                ):
                    found.append(f"line {node.lineno}: an error code spelled out: {value.value!r}")
    return found


def test_the_checker_finds_bare_kinds_and_statuses() -> None:
    bad = """
def f(frame, send, req, entity):
    if frame[0] == 8:
        pass
    send([7, req, "Position", entity, {}])
    if status != "ok":
        pass
    error = {"code": "rate_limited"}
"""
    assert len(vocabulary_literals(bad)) == 4
    good = """
def f(frame, send, req, entity):
    if frame[0] == FrameKind.REPLY and len(frame) == 5:
        send([FrameKind.MUTATE, req, "Position", entity, {}])
    pair = [0, 1]
"""
    assert vocabulary_literals(good) == []


def test_no_frame_kind_or_status_literal_outside_the_protocol_package() -> None:
    offenders = {}
    for package in PACKAGES:
        for path in package.rglob("*.py"):
            if VOCABULARY in path.parents:
                continue
            found = vocabulary_literals(path.read_text())
            if found:
                offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}


@pytest.mark.slow
def test_client_core_imports_no_server_and_no_socket_library() -> None:
    code = (
        "import sys\n"
        "import client_sync.store, client_sync.signal, client_sync.session, client_sync.states\n"
        "bad = ('pl3xus_rx.sync', 'pl3xus_rx.net', 'pl3xus_rx.world', 'websockets')\n"
        "print(sorted(m for m in sys.modules if m.startswith(bad)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    # and the check itself can fail: the provider does load them
    code = code.replace("client_sync.states\n", "client_sync.states, client_sync.provider\n")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert "websockets" in result.stdout and "pl3xus_rx.net" in result.stdout


def _doc_tables() -> dict[int, str]:
    text = (ROOT / "docs" / "protocol.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([A-Z]+) \| [^|]+ \| `\[(\d+)", text, flags=re.M)
    table: dict[int, str] = {}
    for number, name, first in rows:
        assert number == first, f"the shape of {name} starts with {first}, not {number}"
        assert int(number) not in table, f"kind {number} documented twice"
        table[int(number)] = name
    return table


def test_docs_frame_tables_match_frame_kind() -> None:
    assert _doc_tables() == {int(k): k.name for k in FrameKind}


def test_devtools_page_runs_on_the_browser_client() -> None:
    """DevTools has no protocol code of its own: it imports the client, and the generated
    vocabulary as ``protocol``, from /pl3xus.js (no WebSocket, no table of frame kinds or
    flags of its own); tests/test_js_vocabulary.py scans it for bare kinds and statuses."""
    page = (ROOT / "src" / "pl3xus_rx" / "devtools" / "page.html").read_text()
    imported = re.search(r'^import \{([^}]*)\} from "/pl3xus\.js";$', page, flags=re.M)
    assert imported, "DevTools imports the browser client from /pl3xus.js"
    assert {"connect", "protocol"} <= {name.strip() for name in imported.group(1).split(",")}
    assert "new WebSocket" not in page and ".onmessage" not in page
    assert not re.search(r"const (KIND|FLAG|STATUS) = \{", page)


def test_docs_list_every_status_notice_and_error_code() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    for word in (*Status, *NoticeKind):
        assert f"`{word}`" in text, word
    documented = set(re.findall(r"^\| `([a-z_]+)` \| ", text, flags=re.M))
    sent = {str(c) for c in ErrorCode} - {ErrorCode.REMOTE_ERROR}
    assert sent <= documented


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        if sub.__module__ == exceptions_module.__name__:
            out.append(sub)
            out.extend(_subclasses(sub))
    return out


def test_every_protocol_error_code_is_in_the_vocabulary() -> None:
    codes = {cls.code for cls in [ProtocolError, *_subclasses(ProtocolError)]}
    assert codes <= {str(c) for c in ErrorCode}
    assert {str(c) for c in ErrorCode} - codes == {ErrorCode.RATE_LIMITED}  # a limit, no class


def test_exception_tree_in_the_docstring_matches_the_code() -> None:
    doc = exceptions_module.__doc__ or ""
    lines = [line for line in doc.splitlines() if re.search(r"(├──|└──) \w+", line)]
    parents: dict[int, str] = {1: "Pl3xusError"}  # the root stands alone, unindented
    drawn: dict[str, str] = {}
    for line in lines:
        match = re.search(r"(├──|└──) (\w+)", line)
        assert match is not None
        depth = match.start(1) // 4
        name = match.group(2)
        drawn[name] = parents[depth]
        parents[depth + 1] = name
    actual = {
        cls.__name__: next(b.__name__ for b in cls.__bases__ if issubclass(b, Pl3xusError))
        for cls in _subclasses(Pl3xusError)
    }
    assert drawn == actual
    assert set(actual) <= set(exceptions_module.__all__)


@pytest.mark.parametrize(
    "name", ["EntityNotFound", "SubscriptionError", "UnknownComponent", "SequenceGap"]
)
def test_public_errors_live_in_the_one_exception_module(name: str) -> None:
    import pl3xus_rx

    cls = getattr(exceptions_module, name)
    assert cls.__module__ == "pl3xus_rx.exceptions"
    assert getattr(pl3xus_rx, name) is cls


def test_every_reply_status_but_ok_maps_to_its_exception() -> None:
    from pl3xus_rx.exceptions import CommandRejected
    from pl3xus_rx.protocol import rejection_for

    for status in Status:
        error = rejection_for(status, "why", [{"loc": "x"}])
        if status is Status.OK:
            assert type(error) is CommandRejected
            continue
        assert type(error) is not CommandRejected and error.status == status
        assert error.message == "why" and error.errors == [{"loc": "x"}]
    assert type(rejection_for("new_status", "?")) is CommandRejected
