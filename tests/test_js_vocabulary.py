"""No JavaScript or TypeScript we ship or write spells the wire vocabulary by hand: frame
kinds, group flags, REPLY statuses, notice kinds, control actions and close codes come from
the generated ``js/src/protocol.ts`` (``FrameKind.MUTATE``, ``Status.OK``; in a page,
``import { protocol } from "/pl3xus.js"``), as tests/test_architecture.py asks of Python.

The scanner reads code, not text: strings, template literals, comments and regular
expressions are blanked first, so a message quoting a frame's shape (``"[8, req_id, ...]"``)
is not a frame.
"""

from __future__ import annotations

import re
from pathlib import Path

from pl3xus_rx.protocol import CloseCode, ControlAction, FrameKind, NoticeKind, Status

ROOT = Path(__file__).resolve().parent.parent

KINDS = {int(k) for k in FrameKind}
WORDS = {str(w) for w in (*Status, *NoticeKind, *ControlAction)}
CLOSE_CODES = {int(c) for c in CloseCode}

_COMPARE = r"(?:===|!==|==|!=)"
_STRING_COMPARED = re.compile(  # (on code: a string's insides are blank there)
    rf"{_COMPARE}\s*(['\"])(?P<a>[^'\"\n]*)\1"
    rf"|(['\"])(?P<b>[^'\"\n]*)\3\s*{_COMPARE}"
    rf"|\bcase\s*(['\"])(?P<c>[^'\"\n]*)\5\s*:"
)
_KIND_COMPARED = re.compile(
    rf"(?:\[\s*0\s*\]|\bkind)\s*{_COMPARE}\s*(\d+)\b|\b(\d+)\s*{_COMPARE}\s*[\w.$]*(?:\[\s*0\s*\]|\bkind\b)"
)
_FLAGS_MASKED = re.compile(r"\bflags\s*&\s*\d|\d\s*&\s*[\w.$]*\bflags\b")
_NUMBER = re.compile(r"(?<![\w.$])-?(\d+)(?:\.\d+)?(?:e[+-]?\d+)?(?![\w.$])")
_SWITCH = re.compile(r"\bswitch\s*\(([^(){}]*(?:\([^()]*\)[^(){}]*)*)\)\s*\{")
_CASE_NUMBER = re.compile(r"\bcase\s+(\d+)\s*:")
# after these, a "/" starts a regular expression and a "[" an array literal
_EXPRESSION_START = set("([{,;:=!&|?+-*%<>~^") | {""}
_KEYWORDS = {"return", "typeof", "case", "of", "in", "do", "else", "yield", "await", "void"}


def _blank(text: str) -> str:
    return re.sub(r"[^\n]", " ", text)


def code_only(source: str) -> str:
    """``source`` with strings, template literals, comments and regex literals blanked
    (same length, same lines), so that what is left is code."""
    out: list[str] = []
    i, n = 0, len(source)
    last = ""  # the last significant code character or word
    while i < n:
        c = source[i]
        two = source[i : i + 2]
        if two == "//":
            end = source.find("\n", i)
            end = n if end < 0 else end
            out.append(_blank(source[i:end]))
            i = end
        elif two == "/*":
            end = source.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(_blank(source[i:end]))
            i = end
        elif c in "'\"`" or (c == "/" and (last in _EXPRESSION_START or last in _KEYWORDS)):
            j = i + 1
            in_class = False
            while j < n:
                d = source[j]
                if d == "\\":
                    j += 2
                    continue
                if c == "/" and d == "[":
                    in_class = True
                elif c == "/" and d == "]":
                    in_class = False
                elif (d == c and not (c == "/" and in_class)) or (d == "\n" and c != "`"):
                    break  # (the end, or a line break that ends an unterminated one)
                j += 1
            end = min(j + 1, n)
            if c == "/":
                while end < n and source[end].isalpha():  # flags
                    end += 1
            out.append(c + _blank(source[i + 1 : end - 1]) + source[end - 1 : end])
            last = "a"  # a value
            i = end
        else:
            m = re.match(r"[\w$]+", source[i:])
            if m:
                word = m.group(0)
                out.append(word)
                last = word if word in _KEYWORDS else "a"
                i += len(word)
                continue
            out.append(c)
            if not c.isspace():
                last = c
            i += 1
    return "".join(out)


def _line(code: str, index: int) -> int:
    return code.count("\n", 0, index) + 1


def _elements(code: str, open_bracket: int) -> list[str]:
    """The top-level elements of the array literal opening at ``open_bracket``."""
    items, depth, start = [], 0, open_bracket + 1
    for j in range(open_bracket, len(code)):
        c = code[j]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                items.append(code[start:j].strip())
                break
        elif c == "," and depth == 1:
            items.append(code[start:j].strip())
            start = j + 1
    return [item for item in items if item]


def _frames_built(code: str) -> list[tuple[int, str]]:
    """Array literals that stand alone (not an element of another array: a SYNC group or
    an item is one), begin with a bare frame kind and are not a list of numbers:
    ``[7, id, ...]``, ``[5, 1, [...]]``, ``[6, null]`` (``[4, 7]`` passes: it could be
    data)."""
    found = []
    stack: list[bool] = []  # per open bracket: is it an array literal?
    previous = ""
    for m in re.finditer(r"[\w$]+|\S", code):
        token = m.group(0)
        if token in "([{":
            literal = token == "[" and (
                previous in _EXPRESSION_START or previous in _KEYWORDS or previous == "=>"
            )
            if literal and not (stack and stack[-1]):
                items = _elements(code, m.start())
                if (
                    len(items) > 1
                    and items[0].isdigit()
                    and int(items[0]) in KINDS
                    and not all(_NUMBER.fullmatch(item) for item in items)
                ):
                    found.append((_line(code, m.start()), f"[{items[0]}, {items[1]}, ..."))
            stack.append(literal)
        elif token in ")]}" and stack:
            stack.pop()
        if token == ">" and previous == "=":
            previous = "=>"
        elif token not in "([{":
            previous = token if (token in _KEYWORDS or not re.match(r"[\w$]", token)) else "a"
        else:
            previous = token
    return found


def _block(code: str, open_brace: int) -> str:
    depth = 0
    for j in range(open_brace, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return code[open_brace : j + 1]
    return code[open_brace:]


def scan(source: str) -> list[str]:
    """Where ``source`` (JavaScript or TypeScript) spells the wire vocabulary by hand."""
    code = code_only(source)
    findings = [
        f"line {line}: a frame built with a bare kind: {text}" for line, text in _frames_built(code)
    ]
    for m in _KIND_COMPARED.finditer(code):
        number = int(m.group(1) or m.group(2))
        if number in KINDS:
            findings.append(f"line {_line(code, m.start())}: a kind compared with {number}")
    for m in _SWITCH.finditer(code):
        if re.search(r"\bkind\b|\[\s*0\s*\]", m.group(1)):
            body = _block(code, m.end() - 1)
            for case in _CASE_NUMBER.finditer(body):
                line = _line(code, m.end() - 1 + case.start())
                findings.append(f"line {line}: a kind switch with case {case.group(1)}")
    for m in _FLAGS_MASKED.finditer(code):
        findings.append(f"line {_line(code, m.start())}: SYNC flags tested with a bare number")
    for m in _NUMBER.finditer(code):
        if int(m.group(1)) in CLOSE_CODES:
            findings.append(f"line {_line(code, m.start())}: close code {m.group(1)} by hand")
    # (strings are blanked in `code`: find the comparisons there, read the words in `source`)
    for m in _STRING_COMPARED.finditer(code):
        span = next(m.span(g) for g in ("a", "b", "c") if m.group(g) is not None)
        word = source[span[0] : span[1]]
        if word in WORDS:
            findings.append(f'line {_line(code, m.start())}: "{word}" compared as a bare string')
    return sorted(set(findings), key=lambda f: int(f.split()[1].rstrip(":")))


def _page_scripts(html: str) -> str:
    """The page's scripts, at their own lines (the rest blanked)."""
    out = _blank(html)
    for m in re.finditer(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S | re.I):
        out = out[: m.start(1)] + m.group(1) + out[m.end(1) :]
    return out


def shipped_sources() -> dict[str, str]:
    """Every JavaScript and TypeScript source of ours (the generated protocol.ts aside)."""
    files: list[Path] = [ROOT / "src" / "pl3xus_rx" / "devtools" / "page.html"]
    files += sorted((ROOT / "js" / "src").glob("*.ts"))
    files += sorted((ROOT / "js" / "test").glob("*.ts"))
    for pattern in ("*.js", "*.ts", "*.html", "*.mjs", "*.tsx"):
        files += sorted((ROOT / "examples").rglob(pattern))
    out = {}
    for path in files:
        if path.name == "protocol.ts" and path.parent.name == "src":
            continue  # generated from pl3xus_rx.protocol: the one place the numbers are
        text = path.read_text(encoding="utf-8")
        out[str(path.relative_to(ROOT))] = _page_scripts(text) if path.suffix == ".html" else text
    return out


def test_no_javascript_of_ours_spells_the_wire_vocabulary_by_hand() -> None:
    sources = shipped_sources()
    assert "src/pl3xus_rx/devtools/page.html" in sources and "js/src/client.ts" in sources
    found = {name: hits for name, source in sources.items() if (hits := scan(source))}
    assert found == {}, "use FrameKind / SyncFlag / Status / NoticeKind / CloseCode from protocol"


PLANTED = """
function send(id) {
  ws.send(JSON.stringify([7, id, "Speed", 3, { value: 1 }]));
  const frame = [12, id, "pl3xus.tree", {}];
  if (frame[0] === 8) reply(frame);
  if (13 == f[0]) refetch();
  if (msg.kind !== 18) return;
  switch (f[0]) { case 10: notice(f); break; }
  if (reply[2] === "forbidden") refuse();
  if ("ok" !== status) fail();
  switch (status) { case 'not_found': gone(); }
  if (notice.kind === "control_released") lapse();
  if (group.flags & 2) complete();
  if (event.code === 4004) move();
}
"""

CLEAN = """
import { FrameKind, Status, SyncFlag, CloseCode } from "./protocol.js";
// a comment may say [7, req_id, ...] and frame[0] === 8
const text = "is not [8, req_id, status, message, body]";
const shape = `REPLY ${describe(frame)} is not [8, req_id, status]`;
const digits = /^\\d+$/, ids = /^(id|entity|[a-z]+)$/;
function send(id) {
  ws.send(JSON.stringify([FrameKind.MUTATE, id, "Speed", 3, { value: 1 }]));
  s.deliver([FrameKind.SYNC, 1, [[1, COMPLETE, [[1, [1, 2]]], [], []]], 1000, 0]);
  apply(views, [[1, 0, [[3, [30, 30]]], [], []]]);
  const views = new Map([[1, view]]);
  const row = frame[1] + [0, 1].length;
  if (frame[0] === FrameKind.REPLY && frame[2] === Status.OK) done();
  switch (fields.length) { case 0: return {}; case 1: return one; }
  switch (frame[0]) { case FrameKind.NOTICE: notice(); }
  if (change.kind === "upserted" && status === "loading") wait();
  if ((group.flags & SyncFlag.COMPLETE) !== 0 && code === CloseCode.MOVED) move();
  const delay = seconds * 1000, more = items[10];
}
"""


def test_the_scanner_catches_a_planted_frame_and_passes_a_clean_one() -> None:
    found = scan(PLANTED)
    text = "\n".join(found)
    for expected in (
        "line 3: a frame built with a bare kind: [7,",
        "line 4: a frame built with a bare kind: [12,",
        "line 5: a kind compared with 8",
        "line 6: a kind compared with 13",
        "line 7: a kind compared with 18",
        "line 8: a kind switch with case 10",
        'line 9: "forbidden" compared as a bare string',
        'line 10: "ok" compared as a bare string',
        'line 11: "not_found" compared as a bare string',
        'line 12: "control_released" compared as a bare string',
        "line 13: SYNC flags tested with a bare number",
        "line 14: close code 4004 by hand",
    ):
        assert expected in text, (expected, found)
    assert scan(CLEAN) == []


def test_the_scanner_reads_the_page_scripts_at_their_lines() -> None:
    html = '<p>[7, 1]</p>\n<script type="module">\nsend([9, id, "take", 3]);\n</script>\n'
    assert scan(_page_scripts(html)) == ["line 3: a frame built with a bare kind: [9, id, ..."]
