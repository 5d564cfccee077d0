// client_sync.notebook LivePlot: `points` ([t, y], t in seconds) drawn as a line on a
// canvas, over the last `seconds` before the newest point; redrawn once per animation frame
// at most. No imports, no network: anywidget loads this module from the widget's state.

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatNumber(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toPrecision(5)));
}

// The y range: the points' own, a little wider; a flat line gets a band around it.
export function yRange(points) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const [, y] of points) {
    if (y < lo) lo = y;
    if (y > hi) hi = y;
  }
  if (!Number.isFinite(lo)) return [0, 1];
  if (lo === hi) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    return [lo - pad, hi + pad];
  }
  const pad = (hi - lo) * 0.08;
  return [lo - pad, hi + pad];
}

function render({ model, el }) {
  const root = element("div", "pl3xus-nb pl3xus-nb-plot");
  const head = element("div", "pl3xus-nb-head");
  const title = element("span", "pl3xus-nb-title");
  const latest = element("span", "pl3xus-nb-latest");
  const flag = element("span", "pl3xus-nb-flag");
  head.append(title, latest, flag);
  const status = element("div", "pl3xus-nb-status");
  const canvas = element("canvas");
  root.append(head, status, canvas);
  el.append(root);

  let planned = 0;
  function plan() {
    if (!planned) planned = requestAnimationFrame(draw);
  }

  function draw() {
    planned = 0;
    const stale = model.get("stale");
    root.classList.toggle("pl3xus-stale", stale);
    flag.textContent = stale ? "stale" : "";
    title.textContent = model.get("title");
    latest.textContent = formatNumber(model.get("latest"));
    status.textContent = model.get("status");

    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 600;
    const height = canvas.clientHeight || 180;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const style = getComputedStyle(root);
    const ink = style.color || "#222";
    const font = `11px ${style.fontFamily || "sans-serif"}`;
    const left = 56;
    const right = 8;
    const top = 8;
    const bottom = 20;
    const w = Math.max(1, width - left - right);
    const h = Math.max(1, height - top - bottom);

    const seconds = model.get("seconds");
    const points = model.get("points");
    const newest = points.length ? points[points.length - 1][0] : 0;
    const since = newest - seconds;
    const [lo, hi] = yRange(points);
    const x = (t) => left + ((t - since) / seconds) * w;
    const y = (v) => top + (1 - (v - lo) / (hi - lo)) * h;

    // axes and labels
    ctx.strokeStyle = ink;
    ctx.globalAlpha = 0.25;
    ctx.lineWidth = 1;
    ctx.strokeRect(left + 0.5, top + 0.5, w, h);
    ctx.globalAlpha = 0.7;
    ctx.fillStyle = ink;
    ctx.font = font;
    ctx.textAlign = "right";
    ctx.textBaseline = "top";
    ctx.fillText(formatNumber(hi), left - 4, top);
    ctx.textBaseline = "bottom";
    ctx.fillText(formatNumber(lo), left - 4, top + h);
    ctx.textBaseline = "top";
    ctx.fillText("now", left + w, top + h + 4);
    ctx.textAlign = "left";
    ctx.fillText(`−${formatNumber(seconds)} s`, left, top + h + 4);
    ctx.globalAlpha = 1;

    if (!points.length) {
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.globalAlpha = 0.5;
      ctx.fillText("no data yet", left + w / 2, top + h / 2);
      ctx.globalAlpha = 1;
      return;
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, w, h);
    ctx.clip();
    ctx.strokeStyle = "#1f77b4";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    points.forEach(([t, v], i) => {
      if (i === 0) ctx.moveTo(x(t), y(v));
      else ctx.lineTo(x(t), y(v));
    });
    ctx.stroke();
    if (points.length === 1) {
      ctx.fillStyle = "#1f77b4";
      ctx.fillRect(x(points[0][0]) - 2, y(points[0][1]) - 2, 4, 4);
    }
    ctx.restore();
  }

  const names = ["points", "latest", "stale", "status", "title", "seconds"];
  for (const name of names) model.on(`change:${name}`, plan);
  const resized = typeof ResizeObserver === "function" ? new ResizeObserver(plan) : null;
  if (resized) resized.observe(canvas);
  plan();
  return () => {
    for (const name of names) model.off(`change:${name}`, plan);
    if (resized) resized.disconnect();
    if (planned) cancelAnimationFrame(planned);
  };
}

export default { render };
