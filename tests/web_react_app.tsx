// A React app as an application would write it, over the shipped /pl3xus.js and
// /pl3xus-react.js. tests/test_web_react.py type-checks it (tsc --strict, against the shipped
// .d.ts files and the types `pl3xus-rx typescript` writes for its server), bundles it with
// esbuild (React and the two shipped files left out: the page's import map finds them) and
// runs it in Chromium against that server.
import React, { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { connect, InvalidValue } from "/pl3xus.js";
import {
  Pl3xusProvider,
  useClient,
  useComponents,
  useConnection,
  useControl,
  useEntity,
  useMutation,
  useQuery,
  useRequest,
} from "/pl3xus-react.js";
import { Move, Near, Place, schema } from "./types.js";

const search = new URLSearchParams(location.search);
const a = Number(search.get("a"));
const encoding = search.get("encoding") === "json" ? "json" : "msgpack";
const client = connect(`ws://${location.host}/`, { encoding, schema });
const renders = { one: 0 };
Object.assign(window, { client, renders });

function describe(error: Error | null): string {
  if (error === null) return "no error";
  const fields = error instanceof InvalidValue ? error.errors.map((e) => e.loc).join(",") : "-";
  return `${error.name} ${error instanceof InvalidValue} ${fields}`;
}

function Places() {
  const places = useComponents(useClient(), Place); // ReadonlyMap<number, Place>
  const text = [...places]
    .sort(([x], [y]) => x - y)
    .map(([entity, place]) => `${entity}:${place.x},${place.y}`)
    .join(" ");
  return <p id="places">{text}</p>;
}

function Labels() {
  const labels = useComponents(useClient(), "Label"); // by name: the values are unknown
  // @ts-expect-error: an untyped view's values are unknown
  void labels.get(a)?.text;
  return <p id="labels">{labels.size} labels</p>;
}

function OneEntity() {
  const place = useEntity(useClient(), Place, a);
  renders.one += 1;
  return <p id="one">{place === undefined ? "none" : `${place.x},${place.y}`}</p>;
}

function Mutator() {
  const { mutate, pending, error } = useMutation(useClient(), Place);
  return (
    <div>
      <button id="set" onClick={() => void mutate(a, { x: 10, y: 20 })}>set</button>
      <button id="bad" onClick={() => void mutate(a, { x: 5000, y: 0 })}>bad</button>
      <p id="mutation">{pending ? "pending" : describe(error)}</p>
    </div>
  );
}

function Mover() {
  const { call, pending, error, value } = useRequest(useClient(), Move);
  const moved: Place | undefined = value;
  return (
    <div>
      <button id="move" onClick={() => void call({ dx: 1, dy: 1 }, { entity: a })}>move</button>
      <button id="far" onClick={() => void call({ dx: 1000 }, { entity: a })}>far</button>
      <p id="request">
        {pending ? "pending" : describe(error)} / {moved === undefined ? "nothing" : `${moved.x},${moved.y}`}
      </p>
    </div>
  );
}

function NearCount() {
  const state = useQuery(useClient(), Near, { limit: 5 }); // (a new object each render: compared by value)
  const n: number | undefined = state.value?.n;
  return <p id="near">{`${state.status}:${n ?? "-"}`}</p>;
}

function Control() {
  const { holder, by, mine, take, release, error } = useControl(useClient(), a);
  return (
    <div>
      <button id="take" onClick={() => void take()}>take</button>
      <button id="release" onClick={() => void release()}>release</button>
      <p id="control">{holder === null ? "free" : `holder=${holder} by=${by ?? "anonymous"} mine=${mine}`}</p>
      <p id="control-error">{describe(error)}</p>
    </div>
  );
}

function Connection() {
  const { state, stale, age } = useConnection(useClient());
  return <p id="connection">{`${state} ${stale ? "stale" : "fresh"} ${age === null ? "no-age" : "aged"}`}</p>;
}

function App() {
  const [labels, setLabels] = useState(true);
  return (
    <Pl3xusProvider client={client}>
      <Places />
      <OneEntity />
      <Mutator />
      <Mover />
      <NearCount />
      <Control />
      <Connection />
      <button id="toggle" onClick={() => setLabels(!labels)}>toggle</button>
      {labels ? <Labels /> : null}
    </Pl3xusProvider>
  );
}

const root = document.getElementById("root");
if (root === null) throw new Error("no #root");
createRoot(root).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
