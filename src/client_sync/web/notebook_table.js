// client_sync.notebook LiveTable: the page the kernel sends, drawn cell by cell (a cell's
// text is set only when it changed); the pager sets `page`, which the kernel answers with
// that page's rows. No imports, no network: anywidget loads this module from the widget's
// state.

export function formatValue(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    return String(Number(value.toPrecision(6)));
  }
  if (typeof value === "boolean") return value ? "true" : "false";
  return String(value);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render({ model, el }) {
  const root = element("div", "pl3xus-nb pl3xus-nb-table");
  const head = element("div", "pl3xus-nb-head");
  const title = element("span", "pl3xus-nb-title");
  const flag = element("span", "pl3xus-nb-flag");
  head.append(title, flag);
  const status = element("div", "pl3xus-nb-status");
  const table = element("table");
  const thead = table.createTHead();
  const tbody = table.createTBody();
  const pager = element("div", "pl3xus-nb-pager");
  const prev = element("button", "pl3xus-nb-prev", "‹");
  const next = element("button", "pl3xus-nb-next", "›");
  const where = element("span", "pl3xus-nb-where");
  prev.title = "previous page";
  next.title = "next page";
  pager.append(prev, where, next);
  root.append(head, status, table, pager);
  el.append(root);

  function goTo(page) {
    const last = Math.max(0, model.get("page_count") - 1);
    const target = Math.min(Math.max(page, 0), last);
    if (target !== model.get("page")) {
      model.set("page", target);
      model.save_changes();
    }
  }
  prev.addEventListener("click", () => goTo(model.get("page") - 1));
  next.addEventListener("click", () => goTo(model.get("page") + 1));

  function drawColumns() {
    thead.textContent = "";
    const row = thead.insertRow();
    for (const name of model.get("columns")) row.append(element("th", "", name));
    drawRows();
  }

  function drawRows() {
    const rows = model.get("rows");
    // a column of text is aligned left, its head too (by the first row's values)
    const heads = thead.rows[0] ? thead.rows[0].cells : [];
    if (rows.length) {
      rows[0].forEach((value, j) => {
        if (heads[j]) heads[j].classList.toggle("pl3xus-text", typeof value === "string");
      });
    }
    while (tbody.rows.length > rows.length) tbody.deleteRow(-1);
    rows.forEach((values, i) => {
      const tr = tbody.rows[i] || tbody.insertRow();
      while (tr.cells.length > values.length) tr.deleteCell(-1);
      values.forEach((value, j) => {
        const td = tr.cells[j] || tr.insertCell();
        const text = formatValue(value);
        if (td.textContent !== text) td.textContent = text;
        const isText = typeof value === "string";
        if (td.classList.contains("pl3xus-text") !== isText) {
          td.classList.toggle("pl3xus-text", isText);
        }
      });
    });
  }

  function drawState() {
    const stale = model.get("stale");
    root.classList.toggle("pl3xus-stale", stale);
    flag.textContent = stale ? "stale" : "";
    title.textContent = model.get("title");
    status.textContent = model.get("status");
    const page = model.get("page");
    const pages = model.get("page_count");
    const total = model.get("total");
    where.textContent = `page ${page + 1} of ${pages} · ${total} ${total === 1 ? "entity" : "entities"}`;
    prev.disabled = page <= 0;
    next.disabled = page >= pages - 1;
    pager.hidden = pages <= 1;
  }

  const listeners = [
    ["change:columns", drawColumns],
    ["change:rows", drawRows],
  ];
  for (const name of ["stale", "title", "status", "page", "page_count", "total"]) {
    listeners.push([`change:${name}`, drawState]);
  }
  for (const [name, fn] of listeners) model.on(name, fn);
  drawColumns();
  drawState();
  return () => {
    for (const [name, fn] of listeners) model.off(name, fn);
  };
}

export default { render };
