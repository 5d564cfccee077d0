"""``pl3xus-rx typescript``: the TypeScript written for an app's models and for the wire
vocabulary; names and hashes are the WELCOME's; what it writes compiles, and a model change
breaks a stale app's compile."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import types
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import (
    BaseModel,
    Field,
    PlainSerializer,
    RootModel,
    WithJsonSchema,
    computed_field,
)
from typing_extensions import TypedDict

from pl3xus_rx import SyncServer
from pl3xus_rx.__main__ import main
from pl3xus_rx.exceptions import UnsupportedModel
from pl3xus_rx.net import Network
from pl3xus_rx.protocol import FrameKind, Query, Request, Status
from pl3xus_rx.testing import MemoryTransport
from pl3xus_rx.typescript import (
    PROTOCOL_ENUMS,
    identifier,
    javascript_for,
    property_key,
    protocol_typescript,
    typescript_for,
    welcome_tables,
)

ROOT = Path(__file__).resolve().parents[1]
TSC = ROOT / "js" / "node_modules" / ".bin" / "tsc"
PROTOCOL_TS = ROOT / "js" / "src" / "protocol.ts"


# ---------------------------------------------------------------------- an app with everything


class Color(StrEnum):
    RED = "red"
    GREEN = "green"


class Level(IntEnum):
    LOW = 1
    HIGH = 2


class Inner(BaseModel):
    """A nested model."""

    a: int


Keyed = TypedDict("Keyed", {"my-key": int, "ok": str, "2nd": bool})


class Everything(BaseModel):
    """Every feature of the mapping.

    A second paragraph, with a */ that must not end the comment."""

    i: int
    f: float = Field(description="A float, documented.")
    s: str
    b: bool
    n: None
    lit: Literal["a", "b", 3]
    color: Color
    level: Level
    opt: int | None
    maybe: str = "x"
    items: list[int]
    pair: tuple[int, str]
    rest: tuple[int, ...]
    inner: Inner
    inners: list[Inner]
    table: dict[str, float]
    union: int | str
    unions: list[int | str]
    anything: Any
    keyed: Keyed
    al: int = Field(alias="AL")
    weird: Annotated[int, WithJsonSchema({"not": {"type": "string"}})] = 0
    old: int = Field(default=0, deprecated=True)
    hidden: int = Field(default=0, exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def doubled(self) -> int:
        return self.i * 2


class Boosted(BaseModel):
    """The answer to a Boost."""

    by: float


class Boost(Request[Boosted]):
    """Make it faster."""

    factor: float = 1.0


class Found(BaseModel):
    names: list[str]


class Find(Query[Found]):
    text: str


class Chat(BaseModel):
    text: str


def _module(name: str, field: str) -> types.ModuleType:
    """A module ``name`` with a model named ``Point`` (of one int ``field``)."""
    module = types.ModuleType(name)
    code = f"from pydantic import BaseModel\nclass Point(BaseModel):\n    {field}: int\n"
    exec(code, module.__dict__)
    return module


POINT_A = _module("geo_a", "u").Point
POINT_B = _module("geo_b", "v").Point


class Shapes(BaseModel):
    a: POINT_A  # type: ignore[valid-type]
    b: POINT_B  # type: ignore[valid-type]


class Node(BaseModel):
    """A tree: a model that refers to itself."""

    name: str
    children: list[Node] = []


class Names(RootModel[list[str]]):
    """A message that is not an object."""


def handler(*args: Any) -> Any:
    raise NotImplementedError


def setup(server: SyncServer) -> None:
    """Registers one of everything."""
    server.sync_component(Everything)
    server.sync_component(Inner, name="robot.inner")
    server.sync_component(Shapes)
    server.sync_component(Node)
    server.register_message(Names)
    server.request(Boost).targeted().register(handler)
    server.request(Found).returns(Boosted).register(handler)  # a model also reached otherwise
    server.query(Find).register(handler)
    server.register_message(Chat)
    server.register_message(Boosted, name="boosted")
    server.message(Chat).register(handler)  # the same name as a server message


@pytest.fixture(scope="module")
def generated() -> str:
    server = SyncServer()
    setup(server)
    return typescript_for(server)


def block(text: str, name: str) -> str:
    """The declaration of ``name`` (an interface's body, or a type's line)."""
    match = re.search(
        rf"^export (?:interface {name} \{{\n.*?^\}}|type {name} = .*?;)$", text, re.M | re.S
    )
    assert match, f"no declaration of {name}"
    return match.group(0)


def descriptors(text: str) -> dict[str, dict[str, Any]]:
    """Every descriptor const: identifier -> its object (made JSON)."""
    found = {}
    for ident, body in re.findall(r"^export const (\w+): \w+<[^=]*> = (\{.*\});$", text, re.M):
        found[ident] = json.loads(re.sub(r"(\w+): ", r'"\1": ', body))
    return found


# ---------------------------------------------------------------------- the mapping


def test_scalars_literals_and_enums(generated: str) -> None:
    everything = block(generated, "Everything")
    for line in (
        "  i: number;",
        "  f: number;",
        "  s: string;",
        "  b: boolean;",
        "  n: null;",
        '  lit: "a" | "b" | 3;',
        "  color: Color;",
        "  level: Level;",
    ):
        assert line in everything.splitlines(), line
    assert block(generated, "Color") == 'export type Color = "red" | "green";'
    assert block(generated, "Level") == "export type Level = 1 | 2;"


def test_optional_nullable_and_defaults(generated: str) -> None:
    everything = block(generated, "Everything").splitlines()
    assert "  opt: number | null;" in everything
    # what the server sends has every field (to_wire writes defaults too)
    assert "  maybe: string;" in everything
    # what a client sends may leave out a field with a default
    assert "  factor?: number;" in block(generated, "Boost").splitlines()


def test_arrays_tuples_and_dicts(generated: str) -> None:
    everything = block(generated, "Everything").splitlines()
    assert "  items: number[];" in everything
    assert "  pair: [number, string];" in everything
    assert "  rest: number[];" in everything
    assert "  unions: (number | string)[];" in everything
    assert "  union: number | string;" in everything
    i = everything.index("  table: {")
    assert everything[i : i + 3] == ["  table: {", "    [key: string]: number;", "  };"]


def test_nested_models_are_their_own_interfaces_once(generated: str) -> None:
    everything = block(generated, "Everything").splitlines()
    assert "  inner: Inner;" in everything
    assert "  inners: Inner[];" in everything
    assert block(generated, "Inner") == "export interface Inner {\n  a: number;\n}"
    assert generated.count("export interface Inner ") == 1
    # registered under another wire name: its own identifier, naming the same type
    assert "export type robot_inner = Inner;" in generated
    assert (
        "export const robot_inner: ComponentType<robot_inner> = "
        '{ kind: "component", name: "robot.inner"' in generated
    )


def test_recursive_models_and_root_models(generated: str) -> None:
    assert block(generated, "Node") == (
        "export interface Node {\n  name: string;\n  children: Node[];\n}"
    )
    assert block(generated, "Names") == "export type Names = string[];"
    assert "export const Names: MessageType<Names> = " in generated


def test_every_public_name_is_documented() -> None:
    import pl3xus_rx.typescript as module

    assert module.__doc__
    for name in module.__all__:
        obj = getattr(module, name)
        if callable(obj):
            assert obj.__doc__, name


def test_any_is_unknown_and_unsupported_keywords_are_named(generated: str) -> None:
    everything = block(generated, "Everything").splitlines()
    assert "  anything: unknown;" in everything
    assert "  weird?: unknown /* unsupported JSON Schema keyword: not */;" not in everything
    assert "  weird: unknown /* unsupported JSON Schema keyword: not */;" in everything


def test_field_names_are_quoted_when_not_identifiers(generated: str) -> None:
    keyed = block(generated, "Keyed").splitlines()
    assert keyed[1:4] == ['  "my-key": number;', "  ok: string;", '  "2nd": boolean;']
    assert property_key("a_b$1") == "a_b$1"
    assert property_key("a b") == '"a b"'
    assert identifier("pl3xus.tree") == "pl3xus_tree"
    assert identifier("1st") == "_1st"
    assert identifier("default") == "default_"


def test_field_names_not_aliases_and_no_computed_or_excluded_fields(generated: str) -> None:
    everything = block(generated, "Everything")
    assert "  al: number;" in everything.splitlines()
    assert "AL" not in everything
    assert "doubled" not in everything  # (to_wire leaves computed fields out)
    assert "hidden" not in everything  # (exclude=True: never dumped)
    value = Everything.model_validate(
        dict.fromkeys(("i", "f", "union"), 1)
        | {"s": "", "b": True, "n": None, "lit": 3, "color": "red", "level": 1, "opt": None}
        | {"items": [], "pair": (1, ""), "rest": (), "inner": {"a": 1}, "inners": []}
        | {"table": {}, "unions": [], "anything": None, "AL": 1}
        | {"keyed": {"my-key": 1, "ok": "", "2nd": False}}
    )
    from pl3xus_rx.protocol import to_wire

    dumped = set(to_wire(value))
    declared = set(re.findall(r"^  (\w+)\??: ", everything, re.M))
    assert dumped == declared


def test_docstrings_become_doc_comments(generated: str) -> None:
    before = generated.split("export interface Everything {")[0]
    assert before.rstrip().endswith(
        "/**\n * Every feature of the mapping.\n *\n"
        " * A second paragraph, with a *\\/ that must not end the comment.\n */"
    )
    everything = block(generated, "Everything").splitlines()
    assert everything[everything.index("  f: number;") - 1] == "  /** A float, documented. */"
    assert everything[everything.index("  old: number;") - 1] == "  /** @deprecated */"
    assert "/** A nested model. */\nexport interface Inner {" in generated


def test_requests_queries_and_messages(generated: str) -> None:
    assert "export interface Boost {" in generated and "export interface Boosted {" in generated
    assert generated.count("export interface Boosted ") == 1
    assert re.search(
        r"^export const Boost: RequestType<Boost, Boosted> = .*targeted: true \};$", generated, re.M
    )
    assert re.search(
        r"^export const Found: RequestType<Found, Boosted> = .*targeted: false \};$",
        generated,
        re.M,
    )
    assert re.search(r"^export const Find: QueryType<Find, Found> = ", generated, re.M)
    assert re.search(r"^export const Chat: MessageType<Chat> = ", generated, re.M)
    assert "export type boosted = Boosted;" in generated
    # the same wire name in two tables: the second gets its kind as a suffix
    assert re.search(
        r'^export const ChatOneWay: OneWayType<ChatOneWay> = \{ kind: "one_way", name: "Chat", ',
        generated,
        re.M,
    )
    assert "export type ChatOneWay = Chat;" in generated


def test_model_name_clashes_resolve_deterministically(generated: str) -> None:
    shapes = block(generated, "Shapes").splitlines()
    assert shapes[1:] == ["  a: geo_a__Point;", "  b: geo_b__Point;", "}"]
    assert "export interface geo_a__Point {\n  u: number;\n}" in generated
    assert "export interface geo_b__Point {\n  v: number;\n}" in generated
    server = SyncServer()
    setup(server)
    assert typescript_for(server) == generated  # the same registrations, the same text


def test_schema_lists_every_descriptor(generated: str) -> None:
    tail = generated[generated.index("export const schema = {") :]
    assert tail == (
        "export const schema = {\n"
        "  components: [EntityControl, Everything, Node, Shapes, robot_inner],\n"
        "  requests: [Boost, Found],\n"
        "  queries: [Find, pl3xus_connections, pl3xus_history, pl3xus_last_message, "
        "pl3xus_schemas, pl3xus_tree],\n"
        "  messages: [Chat, Names, boosted],\n"
        "  oneWay: [ChatOneWay],\n"
        "} as const;\n"
    )
    assert generated.startswith("// Generated by `pl3xus-rx typescript`: do not edit.\n")


def test_validation_and_serialization_forms_split_where_they_differ() -> None:
    class Speed(BaseModel):
        value: float = 0.0

    class SetSpeed(Request[Speed]):
        speed: Speed

    server = SyncServer()
    server.sync_component(Speed)
    server.request(SetSpeed).register(handler)
    text = typescript_for(server)
    # what the server sends has the field; what a client sends may leave it out
    assert block(text, "Speed") == "export interface Speed {\n  value: number;\n}"
    assert block(text, "SpeedInput") == "export interface SpeedInput {\n  value?: number;\n}"
    assert "  speed: SpeedInput;" in block(text, "SetSpeed").splitlines()
    assert "export const SetSpeed: RequestType<SetSpeed, Speed> = " in text


class Opaque:
    """A class pydantic knows nothing of."""


class Refused(BaseModel):
    """Accepted as an int, sent as an :class:`Opaque`: no JSON Schema for what is sent."""

    model_config = {"arbitrary_types_allowed": True}
    value: Annotated[int, PlainSerializer(lambda v: Opaque(), return_type=Opaque)]


def test_a_model_pydantic_cannot_describe_is_named() -> None:
    server = SyncServer()
    server.register_message(Refused)  # (its hash is of the validation schema: fine)
    with pytest.raises(UnsupportedModel, match="cannot write a TypeScript type for Refused: "):
        typescript_for(server)


# ---------------------------------------------------------------------- the WELCOME's tables


@pytest.mark.asyncio
async def test_names_and_hashes_are_those_of_the_welcome(generated: str) -> None:
    hub = MemoryTransport()
    server = SyncServer(transport=hub)
    setup(server)
    async with server.serve("mem", 1):
        client = Network(transport=hub)
        conn = await client.connect("ws://mem:1/")
        body = client.welcome_of(conn).body
        await client.close()
    assert welcome_tables(server) == {k: body[k] for k in welcome_tables(server)}
    found = descriptors(generated)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for d in found.values():
        by_kind.setdefault(d["kind"], {})[d["name"]] = d
    assert {n: (d["hash"], d["fields"]) for n, d in by_kind["component"].items()} == {
        name: (hash_, fields) for _, name, hash_, fields in body["components"]
    }
    assert {
        n: (d["hash"], d["responseHash"], d["targeted"]) for n, d in by_kind["request"].items()
    } == {name: (h, r, t) for name, h, r, t in body["requests"]}
    assert {n: (d["hash"], d["responseHash"]) for n, d in by_kind["query"].items()} == {
        name: (h, r) for name, h, r in body["queries"]
    }
    assert {n: d["hash"] for n, d in by_kind["message"].items()} == {
        name: h for _, name, h in body["messages"]
    }
    assert {n: (d["hash"], d["targeted"]) for n, d in by_kind["one_way"].items()} == {
        name: (h, t) for name, h, t in body["one_way"]
    }


def test_the_demo_generates() -> None:
    from pl3xus_rx.demo import register_cell

    server = SyncServer()
    register_cell(server)
    text = typescript_for(server)
    for name in ("Pose", "RobotStatus", "EntityControl", "Jog", "ListPrograms"):
        assert re.search(rf"^export const {name}: ", text, re.M), name
    assert "export interface RobotStatus {\n" in text


# ---------------------------------------------------------------------- the command


def test_the_command_writes_to_stdout_or_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pl3xus_rx.demo import register_cell

    server = SyncServer()
    register_cell(server)
    expected = typescript_for(server, command="pl3xus-rx typescript pl3xus_rx.demo:register_cell")
    assert main(["typescript", "pl3xus_rx.demo:register_cell"]) == 0
    assert capsys.readouterr().out == expected
    out = tmp_path / "types.ts"
    assert main(["typescript", "pl3xus_rx.demo:register_cell", "-o", str(out)]) == 0
    assert out.read_text() == expected
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no_such_module:setup"], "cannot load 'no_such_module:setup': No module named"),
        (["pl3xus_rx.demo:no_such_function"], "has no attribute 'no_such_function'"),
        ([], "give either MODULE:FUNCTION"),
        (["pl3xus_rx.demo:register_cell", "--protocol"], "give either MODULE:FUNCTION"),
    ],
)
def test_bad_input_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["typescript", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("pl3xus-rx typescript: ")


def test_a_setup_that_fails_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "failing_app.py").write_text(
        "def setup(server):\n    raise ValueError('no database')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pl3xus_rx", "typescript", "failing_app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "pl3xus-rx typescript: failing_app: ValueError: no database"
    )


# ---------------------------------------------------------------------- the vocabulary


def test_the_committed_protocol_ts_is_fresh() -> None:
    assert PROTOCOL_TS.read_text() == protocol_typescript(), (
        "js/src/protocol.ts is stale: run pl3xus-rx typescript --protocol -o js/src/protocol.ts"
    )


def test_the_vocabulary_has_every_value_with_its_doc() -> None:
    text = protocol_typescript()
    for cls in PROTOCOL_ENUMS:
        assert f"export type {cls.__name__}Value = (typeof {cls.__name__})[keyof typeof" in text
        for member in cls:
            assert f"  {member.name}: {json.dumps(member.value)}," in text
    assert f"  REPLY: {int(FrameKind.REPLY)}," in text
    assert f'  NOT_FOUND: "{Status.NOT_FOUND}",' in text
    assert "  /** `[8, req_id, status, message, body]`: the one answer to a command. */" in text
    assert "/** The first element of every frame: what the rest of the array means. */" in text


# ---------------------------------------------------------------------- it compiles


def tsc_or_skip() -> Path:
    if TSC.exists():
        return TSC
    if os.environ.get("CI"):
        pytest.fail(f"{TSC} is missing: CI installs it with `cd js && npm ci`")
    pytest.skip("no TypeScript compiler: run `cd js && npm ci` to check what is generated")


TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "target": "ES2020",
        "lib": ["ES2020", "DOM"],
        "module": "ES2020",
        "moduleResolution": "bundler",
        "noUncheckedIndexedAccess": True,
        "isolatedModules": True,
        "types": [],
    },
    "include": ["*.ts"],
}


def tsc(directory: Path) -> subprocess.CompletedProcess[str]:
    """``tsc --noEmit --strict`` (ES2020, DOM) on every .ts file of ``directory``."""
    (directory / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    return subprocess.run(
        [str(tsc_or_skip()), "-p", str(directory / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )


APP_TS = """\
import { schema, EntityControl, Everything, Boost, Find, Chat, ChatOneWay } from "./types.js";
import { robot_inner } from "./types.js";
import type { ComponentType, RequestType, QueryType, MessageType, OneWayType } from "./types.js";
import type { Color } from "./types.js";
import { FrameKind, Status } from "./protocol.js";
import type { FrameKindValue } from "./protocol.js";

function f<T>(t: ComponentType<T>): T | undefined { return undefined; }
function ask<Q, R>(t: RequestType<Q, R>, q: Q): R | undefined { return undefined; }
function query<P, R>(t: QueryType<P, R>, p: P): R | undefined { return undefined; }
function on<T>(t: MessageType<T>, fn: (value: T) => void): void {}
function send<T>(t: OneWayType<T>, value: T): void {}

const everything = f(Everything);
const i: number = everything?.i ?? 0;
const color: Color | undefined = everything?.color;
const first: number | undefined = everything?.pair[0];
const label: string | undefined = everything?.pair[1];
const inner: number | undefined = f(robot_inner)?.a;
const holder: number | null | undefined = f(EntityControl)?.holder;
const boosted: number | undefined = ask(Boost, {})?.by;
const boosted2: number | undefined = ask(Boost, { factor: 2 })?.by;
const names: string[] | undefined = query(Find, { text: "x" })?.names;
on(Chat, (chat) => { const text: string = chat.text; });
send(ChatOneWay, { text: "hi" });
const kind: FrameKindValue = FrameKind.REPLY;
const ok: string = Status.OK;
const all: number = schema.components.length + schema.oneWay.length;
const componentName: "component" = schema.components[0].kind;
export { i, color, first, label, inner, holder, boosted, boosted2, names, kind, ok, all };
export { componentName };
"""


@pytest.mark.slow
def test_generated_files_and_an_app_using_them_compile(generated: str, tmp_path: Path) -> None:
    from pl3xus_rx.demo import register_cell

    demo = SyncServer()
    register_cell(demo)
    (tmp_path / "demo.ts").write_text(typescript_for(demo))
    (tmp_path / "types.ts").write_text(generated)
    (tmp_path / "protocol.ts").write_text(protocol_typescript())
    (tmp_path / "app.ts").write_text(APP_TS)
    result = tsc(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # and the check can fail: a wrong type in the app is an error
    (tmp_path / "app.ts").write_text(APP_TS.replace("const i: number", "const i: string"))
    result = tsc(tmp_path)
    assert result.returncode != 0 and "app.ts" in result.stdout


@pytest.mark.slow
def test_the_schema_fits_the_client_cores_schema_type(tmp_path: Path) -> None:
    """The generated descriptors are the client core's (js/src/descriptors.ts), structurally."""
    core = ROOT / "js" / "src" / "descriptors.ts"
    if not core.exists() or "export interface Schema" not in core.read_text():
        pytest.skip("the client core declares no Schema type")
    from pl3xus_rx.demo import register_cell

    server = SyncServer()
    register_cell(server)
    (tmp_path / "types.ts").write_text(typescript_for(server))
    (tmp_path / "descriptors.ts").write_text(core.read_text())
    (tmp_path / "app.ts").write_text(
        'import { schema, Pose } from "./types.js";\n'
        'import type { Schema, ComponentType } from "./descriptors.js";\n'
        "const s: Schema = schema;\n"
        "const p: ComponentType<Pose> = Pose;\n"
        "export { s, p };\n"
    )
    result = tsc(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


STALE_APP = """\
import { Position } from "./types.js";
import type { ComponentType } from "./types.js";

function f<T>(t: ComponentType<T>): T | undefined { return undefined; }
const x: number = f(Position)?.x ?? 0;
export { x };
"""


@pytest.mark.slow
def test_a_model_change_makes_a_stale_app_fail_to_compile(tmp_path: Path) -> None:
    model = textwrap.dedent(
        """\
        from pydantic import BaseModel

        class Position(BaseModel):
            {field}: float
            y: float

        def setup(server):
            server.sync_component(Position)
        """
    )

    def generate() -> None:
        result = subprocess.run(
            [sys.executable, "-m", "pl3xus_rx", "typescript", "cell_app:setup", "-o", "types.ts"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr

    (tmp_path / "cell_app.py").write_text(model.format(field="x"))
    generate()
    assert (
        "export interface Position {\n  x: number;\n  y: number;\n}"
        in (tmp_path / "types.ts").read_text()
    )
    (tmp_path / "app.ts").write_text(STALE_APP)
    result = tsc(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    (tmp_path / "cell_app.py").write_text(model.format(field="left"))
    generate()
    result = tsc(tmp_path)
    assert result.returncode != 0
    assert "app.ts" in result.stdout and "Property 'x' does not exist" in result.stdout


def test_the_docs_example_is_what_the_command_writes(tmp_path: Path) -> None:
    """docs/web.md: its Python app, generated, gives every part of its TypeScript example
    verbatim (the parts are separated by blank lines)."""
    text = (ROOT / "docs" / "web.md").read_text()
    code = next(c for c in re.findall(r"```python\n(.*?)```", text, re.S) if "robot_app" in c)
    example = next(
        c
        for c in re.findall(r"```ts\n(.*?)```", text, re.S)
        if c.startswith("// Generated by `pl3xus-rx typescript robot_app:setup`")
    )
    (tmp_path / "robot_app.py").write_text(code)
    result = subprocess.run(
        [sys.executable, "-m", "pl3xus_rx", "typescript", "robot_app:setup"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for part in example.split("\n\n"):
        assert part.strip("\n") in result.stdout, part


# ---------------------------------------------------------------------- types.js + types.d.ts


def test_the_javascript_and_its_declarations_are_one_pair(generated: str) -> None:
    """``types.js`` holds the TypeScript module's descriptors and schema, no types;
    ``types.d.ts`` declares each of them with the TypeScript module's types."""
    server = SyncServer()
    setup(server)
    js, dts = javascript_for(server)
    consts = re.findall(r"^export const (\w+): (\w+<[^=]*>) = (\{.*\});$", generated, re.M)
    assert consts
    in_js = dict(re.findall(r"^export const (\w+) = (\{.*\});$", js, re.M))
    in_dts = dict(re.findall(r"^export declare const (\w+): (.*);$", dts, re.M))
    assert in_js.keys() == {ident for ident, _, _ in consts}
    for ident, declared, literal in consts:
        assert in_js[ident] == literal, ident
        assert in_dts[ident] == declared, ident
    assert "export const schema = {" in js and "export declare const schema: {" in dts
    ts_schema = generated[generated.index("export const schema = {") :]
    for key, members in re.findall(r"^  (\w+): \[(.*)\],$", ts_schema, re.M):
        assert f"  {key}: [{members}],\n" in js
        typed = ", ".join(f"typeof {m}" for m in members.split(", ") if m)
        assert f"  readonly {key}: readonly [{typed}];\n" in dts
    # the JavaScript is JavaScript: no types, no `as const`
    for typescript_only in ("interface ", "export type ", "as const", ": ComponentType<"):
        assert typescript_only not in js
    # the declarations hold every type the TypeScript module declares, and no values
    for declaration in re.findall(r"^export (?:interface|type) \w+.*$", generated, re.M):
        assert declaration in dts
    assert " = {" not in dts.replace("export type", "")


def test_the_command_writes_javascript_and_declarations_for_a_js_name(tmp_path: Path) -> None:
    from pl3xus_rx.demo import register_cell

    server = SyncServer()
    register_cell(server)
    js, dts = javascript_for(server, command="pl3xus-rx typescript pl3xus_rx.demo:register_cell")
    out = tmp_path / "types.js"
    assert main(["typescript", "pl3xus_rx.demo:register_cell", "-o", str(out)]) == 0
    assert out.read_text() == js and (tmp_path / "types.d.ts").read_text() == dts
    assert "// Its types are in types.d.ts, for `tsc --checkJs`." in js
    # a .ts name still gets the one TypeScript module, and nothing beside it
    assert main(["typescript", "pl3xus_rx.demo:register_cell", "-o", str(tmp_path / "t.ts")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.ts", "types.d.ts", "types.js"]


JS_TSCONFIG = {
    "compilerOptions": {
        **TSCONFIG["compilerOptions"],  # type: ignore[dict-item]
        "allowJs": True,
        "checkJs": True,
    },
    "include": ["*.js", "*.d.ts"],
}

JS_APP = """\
// @ts-check
import { Position, Move, schema } from "./types.js";

/**
 * @template T
 * @param {import("./types.js").ComponentType<T>} type
 * @returns {T | undefined}
 */
function latest(type) { return undefined; }

/**
 * @template Q, R
 * @param {import("./types.js").RequestType<Q, R>} type
 * @param {Q} payload
 * @returns {R | undefined}
 */
function ask(type, payload) { return undefined; }

/** @param {import("./types.js").Position} p */
const show = (p) => `${p.x.toFixed(1)}, ${p.y.toFixed(1)}`;
const x = latest(Position)?.x ?? 0;
const moved = ask(Move, { dx: 5 });
const named = schema.components[0].name + Move.name;
const text = moved === undefined ? "" : show(moved);
export { x, named, text };
"""


@pytest.mark.slow
def test_a_javascript_page_is_checked_against_the_declarations(tmp_path: Path) -> None:
    """``tsc --checkJs --strict`` passes on a plain JavaScript app importing ``types.js``,
    and fails, naming the field, once a model's field is renamed and the pair regenerated."""
    model = textwrap.dedent(
        """\
        from pydantic import BaseModel

        class Position(BaseModel):
            {field}: float
            y: float

        class Move(BaseModel):
            dx: float
            dy: float = 0.0

        def setup(server):
            server.sync_component(Position)
            server.request(Move).targeted().returns(Position).register(lambda *a: None)
        """
    )

    def generate() -> None:
        result = subprocess.run(
            [sys.executable, "-m", "pl3xus_rx", "typescript", "js_app:setup", "-o", "types.js"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr

    def check() -> subprocess.CompletedProcess[str]:
        (tmp_path / "tsconfig.json").write_text(json.dumps(JS_TSCONFIG))
        return subprocess.run(
            [str(tsc_or_skip()), "-p", str(tmp_path / "tsconfig.json")],
            capture_output=True,
            text=True,
            timeout=120,
        )

    (tmp_path / "js_app.py").write_text(model.format(field="x"))
    generate()
    (tmp_path / "app.js").write_text(JS_APP)
    result = check()
    assert result.returncode == 0, result.stdout + result.stderr
    # the check can fail: a payload of the wrong type is an error in the JavaScript
    (tmp_path / "app.js").write_text(JS_APP.replace("{ dx: 5 }", '{ dx: "5" }'))
    result = check()
    assert result.returncode != 0 and "app.js" in result.stdout

    (tmp_path / "app.js").write_text(JS_APP)
    (tmp_path / "js_app.py").write_text(model.format(field="left"))
    generate()
    result = check()
    assert result.returncode != 0
    assert "app.js" in result.stdout and "Property 'x' does not exist" in result.stdout


def test_a_schema_keyword_cannot_end_its_comment_and_inject_code() -> None:
    from typing import Any as AnyType

    from pydantic import Field as PydanticField

    evil = '*/ }; globalThis.PWNED = 13; console.log("PWNED"); interface Z { //'

    class Sneaky(BaseModel):
        e: AnyType = PydanticField(None, json_schema_extra={evil: 1, "not": {"type": "x*/"}})

    server = SyncServer()
    server.sync_component(Sneaky)
    text = typescript_for(server)
    line = next(line for line in text.splitlines() if line.strip().startswith("e: "))
    assert line.strip().startswith("e: unknown /* unsupported") and line.endswith("*/;")
    assert line.count("*/") == 1  # (the comment ends where the generator ends it)
    assert "x*/" not in text
