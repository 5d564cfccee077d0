// @ts-check
// An operator HMI for the demo cell (`pl3xus-rx demo --serve examples/web_hmi`): plain
// JavaScript, no build step. The client comes from the server (/pl3xus.js), the types from
// `pl3xus-rx typescript pl3xus_rx.demo:register_cell -o types.js`; `tsc -p .` checks this
// file against them. Text from the server is always set as textContent, never as HTML.
import { CommandRejected, InvalidValue, connect, effect, protocol, serverUrl } from "/pl3xus.js";
import {
  CreateProgram,
  DeleteProgram,
  Jog,
  Joints,
  ListPrograms,
  Name,
  Pose,
  RobotStatus,
  SetSpeed,
  Start,
  Stop,
  schema,
} from "./types.js";

/** @typedef {import("/pl3xus.js").Pl3xusClient} Client */
/** @typedef {import("./types.js").ProgramRow} ProgramRow */

const CHART_SECONDS = 10;
const JOINT_COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4"];
const TOAST_SECONDS = 8;

// the token, if the server wants one, comes in this page's own URL (?token=...)
const token = new URLSearchParams(location.search).get("token") ?? undefined;
const client = connect(serverUrl(), { schema, token, staleAfter: 2 });
/** @type {any} */ (window).hmi = { client }; // (for the browser's console, and the tests)

/**
 * An element with a class and, optionally, text (always as text).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * @param {string} id
 * @returns {HTMLElement}
 */
function byId(id) {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`index.html has no #${id}`);
  return node;
}

/**
 * Shows a refused command: each field error next to its input (by `loc`), anything else in
 * `message`. Clears what an earlier refusal showed.
 * @param {HTMLElement} form
 * @param {HTMLElement} message
 * @param {unknown} error
 */
function showRefusal(form, message, error) {
  for (const slot of form.querySelectorAll("[data-error-for]")) slot.textContent = "";
  message.textContent = "";
  if (error === null) return;
  if (error instanceof InvalidValue && error.errors.length > 0) {
    for (const fieldError of error.errors) {
      const field = fieldError.loc.split(".")[0] ?? "";
      const slot = form.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
      if (slot !== null) slot.textContent = fieldError.msg;
      else message.textContent = `${fieldError.loc}: ${fieldError.msg}`;
    }
  } else if (error instanceof CommandRejected) {
    message.textContent = error.reason;
  } else {
    message.textContent = error instanceof Error ? error.message : String(error);
  }
}

/**
 * Runs a command from a form: the refusal, if any, shown by field.
 * @param {HTMLElement} form
 * @param {HTMLElement} message
 * @param {() => Promise<unknown>} command
 */
async function run(form, message, command) {
  showRefusal(form, message, null); // (an older refusal goes: it is about an older action)
  try {
    await command();
    showRefusal(form, message, null);
  } catch (error) {
    showRefusal(form, message, error);
  }
}

/**
 * A labelled number input with a slot for its field error.
 * @param {string} field
 * @param {string} label
 * @param {number} value
 * @param {number} step
 */
function numberField(field, label, value, step) {
  const wrap = el("label", "field");
  wrap.append(el("span", "label", label));
  const input = el("input");
  input.type = "number";
  input.name = field;
  input.step = String(step);
  input.value = String(value);
  wrap.append(input, el("span", "field-error"));
  /** @type {HTMLElement} */ (wrap.lastElementChild).dataset["errorFor"] = field;
  return { wrap, input };
}

// ---------------------------------------------------------------------- the joint chart

class JointChart {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    /** @type {{ t: number, angles: readonly number[] }[]} */
    this.samples = [];
  }

  /** @param {readonly number[]} angles */
  add(angles) {
    const t = performance.now() / 1000;
    this.samples.push({ t, angles });
    // (keep the last sample older than the window: the lines start at the left edge)
    while (this.samples.length > 1 && (this.samples[1]?.t ?? t) < t - CHART_SECONDS) this.samples.shift();
  }

  /** Draws the last {@link CHART_SECONDS} seconds, each joint held at its last value until now. */
  draw() {
    const ctx = this.canvas.getContext("2d");
    if (ctx === null) return;
    const { width, height } = this.canvas;
    ctx.clearRect(0, 0, width, height);
    ctx.strokeStyle = "#8884";
    ctx.beginPath();
    ctx.moveTo(0, height / 2);
    ctx.lineTo(width, height / 2);
    ctx.stroke();
    const now = performance.now() / 1000;
    const x = (/** @type {number} */ t) => width - ((now - t) / CHART_SECONDS) * width;
    const y = (/** @type {number} */ deg) => height / 2 - (Math.max(-180, Math.min(180, deg)) / 180) * (height / 2 - 2);
    for (let joint = 0; joint < 6; joint++) {
      ctx.strokeStyle = JOINT_COLORS[joint] ?? "#888";
      ctx.beginPath();
      this.samples.forEach((sample, i) => {
        const px = x(sample.t);
        const py = y(sample.angles[joint] ?? 0);
        if (i === 0) ctx.moveTo(px, py);
        else ctx.lineTo(px, py);
      });
      const last = this.samples[this.samples.length - 1];
      if (last !== undefined) ctx.lineTo(width, y(last.angles[joint] ?? 0));
      ctx.stroke();
    }
  }
}

/** @type {Set<JointChart>} */
const charts = new Set();
setInterval(() => {
  for (const chart of charts) chart.draw();
}, 100);

// ---------------------------------------------------------------------- a robot's card

/**
 * A robot's card: its live values, who controls it, and its commands. Returns the function
 * that removes it.
 * @param {Client} client
 * @param {number} robot
 * @returns {() => void}
 */
function robotCard(client, robot) {
  const card = el("section", "robot");
  card.dataset["entity"] = String(robot);
  const title = el("h2", "value", `robot ${robot}`);
  const pose = el("p", "pose value");
  const status = el("p", "status value");
  const holder = el("p", "holder value");
  const canvas = el("canvas", "chart");
  canvas.width = 360;
  canvas.height = 120;
  canvas.setAttribute("aria-label", `joint angles of the last ${CHART_SECONDS} s`);
  const chart = new JointChart(canvas);
  charts.add(chart);
  // one signal each, made once (every call of client.entity counts as a user of the view)
  const nameOf = client.entity(Name, robot);
  const poseOf = client.entity(Pose, robot);
  const statusOf = client.entity(RobotStatus, robot);
  const jointsOf = client.entity(Joints, robot);
  const controlOf = client.controlledBy(robot);

  const take = el("button", "take", "Take control");
  const release = el("button", "release", "Release");
  const controls = el("div", "row");
  controls.append(take, release);

  const jogForm = el("form", "jog");
  const dx = numberField("dx", "dx mm", 10, 1);
  const dy = numberField("dy", "dy mm", 0, 1);
  const jog = el("button", "do-jog", "Jog");
  jogForm.append(dx.wrap, dy.wrap, jog);

  const speedForm = el("form", "speed");
  const speed = numberField("speed", "speed", 0.5, 0.05);
  const setSpeed = el("button", "do-speed", "Set speed");
  const start = el("button", "start", "Start");
  start.type = "button";
  const stop = el("button", "stop", "Stop");
  stop.type = "button";
  speedForm.append(speed.wrap, setSpeed, start, stop);

  const message = el("p", "message");
  card.append(title, pose, status, holder, canvas, controls, jogForm, speedForm, message);
  byId("robots").append(card);

  const disposers = [
    effect(() => {
      const name = nameOf.value;
      title.textContent = name?.text ?? `robot ${robot}`;
    }),
    effect(() => {
      const p = poseOf.value;
      pose.textContent = p === undefined ? "pose: …" : `x ${p.x.toFixed(1)} mm  y ${p.y.toFixed(1)} mm  θ ${p.theta.toFixed(3)} rad`;
    }),
    effect(() => {
      const s = statusOf.value;
      status.textContent = s === undefined ? "" : `${s.state}, speed ${Math.round(s.speed * 100)} %`;
    }),
    effect(() => {
      const j = jointsOf.value;
      if (j !== undefined) chart.add(j.angles);
    }),
    effect(() => {
      const control = controlOf.value;
      const me = client.welcome.value?.connectionId;
      const mine = control?.holder != null && control.holder === me;
      holder.classList.toggle("mine", mine);
      if (control?.holder == null) holder.textContent = "control: nobody";
      else if (mine) holder.textContent = "control: you";
      else holder.textContent = `control: ${control.by ?? `connection ${control.holder}`}`;
      take.disabled = mine;
      release.disabled = !mine;
    }),
  ];

  take.addEventListener("click", () => void run(card, message, () => client.takeControl(robot)));
  release.addEventListener("click", () => void run(card, message, () => client.releaseControl(robot)));
  jogForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const payload = { dx: dx.input.valueAsNumber, dy: dy.input.valueAsNumber };
    void run(jogForm, message, () => client.request(Jog, payload, { entity: robot }));
  });
  speedForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const payload = { speed: speed.input.valueAsNumber };
    void run(speedForm, message, () => client.request(SetSpeed, payload, { entity: robot }));
  });
  start.addEventListener("click", () => void run(speedForm, message, () => client.request(Start, {}, { entity: robot })));
  stop.addEventListener("click", () => void run(speedForm, message, () => client.request(Stop, {}, { entity: robot })));

  return () => {
    for (const dispose of disposers) dispose();
    charts.delete(chart);
    card.remove();
  };
}

// ---------------------------------------------------------------------- the robots

/** @type {Map<number, () => void>} */
const cards = new Map();
const robots = client.components(RobotStatus);
effect(() => {
  const present = robots.value; // (every robot has a RobotStatus)
  for (const [robot, remove] of cards) {
    if (!present.has(robot)) {
      remove();
      cards.delete(robot);
    }
  }
  for (const robot of [...present.keys()].sort((a, b) => a - b)) {
    if (!cards.has(robot)) cards.set(robot, robotCard(client, robot));
  }
});

// ---------------------------------------------------------------------- the program library

const programs = client.query(ListPrograms, {});
const programList = byId("programs");
const programForm = byId("new-program");
const programMessage = byId("program-message");
effect(() => {
  const state = programs.state.value;
  programList.classList.toggle("loading", state.status === "loading");
  if (state.value === undefined) return;
  /** @type {HTMLElement[]} */
  const rows = state.value.programs.map((/** @type {ProgramRow} */ row) => {
    const item = el("li", "program");
    item.dataset["entity"] = String(row.program);
    const remove = el("button", "delete", "Delete");
    remove.addEventListener("click", () => void run(programForm, programMessage, () => client.request(DeleteProgram, {}, { entity: row.program })));
    item.append(el("span", "name value", row.name), el("span", "steps value", `${row.steps} steps`), remove);
    return item;
  });
  programList.replaceChildren(...rows);
  if (rows.length === 0) programList.append(el("li", "empty", "no programs yet"));
});
programForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const input = /** @type {HTMLInputElement} */ (programForm.querySelector("input[name=name]"));
  void run(programForm, programMessage, async () => {
    await client.request(CreateProgram, { name: input.value });
    input.value = "";
  });
});

// ---------------------------------------------------------------------- notifications

const toasts = byId("toasts");
/** @type {WeakSet<object>} */
const shown = new WeakSet();
effect(() => {
  for (const note of client.notifications.value) {
    if (shown.has(note)) continue;
    shown.add(note);
    const toast = el("div", `toast ${note.level}`, note.text);
    toasts.append(toast);
    setTimeout(() => toast.remove(), TOAST_SECONDS * 1000);
  }
});

// ---------------------------------------------------------------------- the connection

const connection = byId("connection");
const ageText = byId("age");
const who = byId("identity");
const problem = byId("problem");
// how old the data is: the client's `age`, which keeps growing while the connection is down
effect(() => {
  const age = client.age.value;
  ageText.textContent = client.stale.value && age !== null ? `data ${Math.round(age)} s old` : "";
});
effect(() => {
  const state = client.state.value;
  const stale = client.stale.value;
  const live = state === "open" && !stale;
  document.body.classList.toggle("stale", !live);
  connection.classList.toggle("live", live);
  connection.textContent = live ? "live" : state === "open" ? "stale" : state === "closed" ? "closed" : "disconnected: reconnecting…";
});
effect(() => {
  const welcome = client.welcome.value;
  if (welcome !== null) {
    const name = welcome.identity.anonymous ? "anonymous" : welcome.identity.name;
    who.textContent = `you: ${name}, connection ${welcome.connectionId}`;
  }
});
effect(() => {
  const close = client.lastClose.value;
  const error = client.error.value;
  if (close !== null && close.code === protocol.CloseCode.CREDENTIAL_EXPIRED) {
    problem.textContent = "your credential expired: reload with a fresh ?token=";
  } else if (close !== null && close.code === protocol.CloseCode.DISCONNECTED) {
    problem.textContent = `the server disconnected this page: ${close.reason}`;
  } else {
    problem.textContent = error === null || error instanceof CommandRejected ? "" : error.message;
  }
});
