// pharmo2o console: what every page module (the core's and the plugins') imports.
//
//   import { api, h, fmt, ui, forms } from "/console/static/lib.js";
//
// `api` talks to the JSON API with the signed-in user's bearer token (kept in
// this tab's sessionStorage, sent only in the Authorization header, never in a
// URL); a 401 signs the user out. Errors are `ApiError`s carrying the
// problem+json body, whose `errors[{field, message}]` `forms.showErrors` puts
// next to the form fields of the same name. `h` builds DOM nodes; text is
// always set as text, never parsed as HTML.

const TOKEN_KEY = "pharmo2o.token";

export const session = {
  token() { return sessionStorage.getItem(TOKEN_KEY); },
  set(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.fields = (this.problem.errors || []).map((e) => ({ field: e.field, message: e.message }));
  }
}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") params.append(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

async function request(method, path, { query, json, body, contentType, auth = true } = {}) {
  const headers = { Accept: "application/json" };
  const token = session.token();
  if (auth && token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  } else if (body !== undefined) {
    headers["Content-Type"] = contentType || "application/octet-stream";
    payload = body;
  }
  let resp;
  try {
    resp = await fetch(url(path, query), { method, headers, body: payload, credentials: "omit", cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, { title: "Network error", detail: "the server cannot be reached; check the connection" });
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { detail: text.slice(0, 200) }; }
  }
  if (!resp.ok) {
    if (resp.status === 401 && auth) window.dispatchEvent(new CustomEvent("pharmo2o:signed-out"));
    throw new ApiError(resp.status, data);
  }
  return data;
}

export const api = {
  request,
  get: (path, query) => request("GET", path, { query }),
  post: (path, json, opts = {}) => request("POST", path, { json, ...opts }),
  patch: (path, json) => request("PATCH", path, { json }),
  /** Every item of a paginated list (follows next_cursor; at most `max` items). */
  async all(path, query = {}, max = 1000) {
    const items = [];
    let cursor = null;
    do {
      const page = await request("GET", path, { query: { ...query, limit: 200, cursor } });
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && items.length < max);
    return items;
  },
};

// ------------------------------------------------------------------ DOM

/** h("button", {class: "primary", onclick: fn}, "Save") -> an element. Children: nodes, strings, arrays, null. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value") el.value = value;
    else if (key === "checked" || key === "disabled" || key === "selected" || key === "required") el[key] = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

// ------------------------------------------------------------- formatting

function pad(n, width = 2) { return String(n).padStart(width, "0"); }

export const fmt = {
  /** Integer fen -> "¥1,234.50" (no floating point). */
  money(fen) {
    if (fen === null || fen === undefined) return "–";
    const neg = fen < 0;
    const abs = Math.abs(fen);
    const yuan = Math.floor(abs / 100).toLocaleString("en-US");
    return `${neg ? "-" : ""}¥${yuan}.${pad(abs % 100)}`;
  },
  /** Short money for chart axes: ¥12.3k. */
  moneyShort(fen) {
    const y = fen / 100;
    if (Math.abs(y) >= 10000) return `¥${(y / 10000).toFixed(1)}万`;
    if (Math.abs(y) >= 1000) return `¥${(y / 1000).toFixed(1)}k`;
    return `¥${Math.round(y)}`;
  },
  /** "12.50" or "12" -> 1250; null when not a money amount. */
  parseYuan(text) {
    const m = /^\s*(\d{1,10})(?:\.(\d{1,2}))?\s*$/.exec(String(text ?? ""));
    if (!m) return null;
    return Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0"));
  },
  yuan(fen) { return fen === null || fen === undefined ? "" : `${Math.floor(fen / 100)}.${pad(fen % 100)}`; },
  dateTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  },
  time(iso) { const d = iso ? new Date(iso) : new Date(); return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; },
  /** Seconds -> "45 s", "12 min", "2 h 05 min", "3 d 4 h". */
  age(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min`;
    const hrs = Math.floor(m / 60);
    if (hrs < 24) return `${hrs} h ${pad(m % 60)} min`;
    return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
  },
  since(iso) { return iso ? (Date.now() - new Date(iso).getTime()) / 1000 : 0; },
  /** Whole days from today (local) to a YYYY-MM-DD date. */
  daysUntil(isoDate) {
    const [y, mo, d] = isoDate.split("-").map(Number);
    const today = new Date();
    const a = Date.UTC(today.getFullYear(), today.getMonth(), today.getDate());
    return Math.round((Date.UTC(y, mo - 1, d) - a) / 86400000);
  },
  today() { const d = new Date(); return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`; },
  rxClass(c) { return { rx: "Rx", otc_a: "OTC-A 甲类", otc_b: "OTC-B 乙类" }[c] || c; },
  status(s) {
    return { awaiting_review: "awaiting review", awaiting_payment: "awaiting payment", paid: "paid",
      ready: "ready for pickup", dispatched: "dispatched", completed: "completed", cancelled: "cancelled",
      refunded: "refunded" }[s] || s;
  },
};

// ------------------------------------------------------------------ forms

export const forms = {
  /** A labelled control whose errors show under it: field("SKU", h("input", {name: "sku"}), {name: "sku"}). */
  field(label, control, { name, required = false, hint, wide = false, check = false } = {}) {
    name = name || control.name;
    if (required && "required" in control) control.required = true;
    const wrap = h("label", { class: `field${required ? " required" : ""}${wide ? " wide" : ""}${check ? " check" : ""}`,
      dataset: { field: name } });
    if (check) wrap.append(control, h("span", { text: label }));
    else wrap.append(h("span", { text: label }), control);
    if (hint) wrap.append(h("span", { class: "hint", text: hint }));
    wrap.append(h("span", { class: "error", role: "alert" }));
    return wrap;
  },
  input(name, props = {}) { return h("input", { name, id: `f-${name}-${Math.random().toString(36).slice(2, 7)}`, ...props }); },
  select(name, options, props = {}) {
    return h("select", { name, ...props },
      options.map(([value, label]) => h("option", { value, selected: String(props.value ?? "") === String(value) }, label)));
  },
  clearErrors(form) {
    form.querySelectorAll(".field .error").forEach((e) => { e.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
    const box = form.querySelector(".form-error");
    if (box) box.textContent = "";
  },
  /** Put an ApiError's field errors next to the fields; the rest (and the detail) in the form's error box. */
  showErrors(form, err, aliases = {}) {
    forms.clearErrors(form);
    const fields = err instanceof ApiError ? err.fields : [];
    const loose = [];
    let first = null;
    for (const { field, message } of fields) {
      const name = aliases[field] || field;
      const wrap = form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
      if (!wrap) { loose.push(`${field}: ${message}`); continue; }
      const slot = wrap.querySelector(".error");
      slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
      const control = wrap.querySelector("input, select, textarea");
      if (control) { control.setAttribute("aria-invalid", "true"); first = first || control; }
    }
    let box = form.querySelector(".form-error");
    if (!box) { box = h("div", { class: "form-error", role: "alert" }); form.prepend(box); }
    if (loose.length) box.textContent = loose.join("; ");
    else if (!fields.length) box.textContent = err.message || String(err);
    else if (!first) box.textContent = err.message;
    if (first) first.focus();
  },
  /** A client-side error on one field (same look as the API's). */
  fieldError(form, name, message) {
    forms.showErrors(form, new ApiError(422, { detail: message, errors: [{ field: name, message }] }));
  },
  values(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name) continue;
      if (el.type === "checkbox") out[el.name] = el.checked;
      else out[el.name] = el.value;
    }
    return out;
  },
};

// --------------------------------------------------------------------- ui

function toastHost() {
  let host = document.querySelector(".toasts");
  if (!host) { host = h("div", { class: "toasts", role: "status" }); document.body.append(host); }
  return host;
}

export const ui = {
  toast(message, kind = "info") {
    const el = h("div", { class: `toast ${kind}`, text: message });
    toastHost().append(el);
    setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
  },
  /** A modal dialog; `build(close)` returns its content. Resolves with what `close(value)` is given. */
  dialog(build, { wide = false, label = "Dialog" } = {}) {
    return new Promise((resolve) => {
      const body = h("div", { class: "dialog-body" });
      const dlg = h("dialog", { class: wide ? "wide" : "", "aria-label": label }, body);
      let done = false;
      const close = (value) => {
        if (done) return;
        done = true;
        dlg.close();
        dlg.remove();
        resolve(value);
      };
      dlg.addEventListener("cancel", (e) => { e.preventDefault(); close(undefined); });
      body.append(build(close));
      document.body.append(dlg);
      dlg.showModal();
      const first = dlg.querySelector("input:not([type=hidden]), select, textarea");
      if (first) first.focus();
    });
  },
  /** Ask to confirm; resolves true or false. */
  confirm({ title, message, confirmLabel = "Confirm", danger = false }) {
    return ui.dialog((close) => h("div", {},
      h("h2", { text: title }),
      Array.isArray(message) ? message.map((m) => h("p", { text: m })) : h("p", { text: message }),
      h("div", { class: "actions" },
        h("button", { type: "button", onclick: () => close(false) }, "Cancel"),
        h("button", { type: "button", class: danger ? "danger" : "primary", "data-confirm": "",
          onclick: () => close(true) }, confirmLabel))), { label: title }).then(Boolean);
  },
  /**
   * A form in a dialog: `fields` are nodes (from forms.field); `submit(values, form)` calls the API and
   * returns a result (closes the dialog) or throws an ApiError (shown next to the fields; the dialog stays).
   */
  formDialog({ title, intro, fields, submitLabel = "Save", submit, danger = false, wide = false, aliases = {} }) {
    return ui.dialog((close) => {
      const form = h("form", { class: "grid", novalidate: true });
      const button = h("button", { type: "submit", class: danger ? "danger" : "primary" }, submitLabel);
      form.append(h("div", { class: "form-error wide", role: "alert" }), ...fields,
        h("div", { class: "actions wide" },
          h("button", { type: "button", onclick: () => close(undefined) }, "Cancel"), button));
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        button.disabled = true;
        try {
          const result = await submit(forms.values(form), form);
          if (result !== false) close(result === undefined ? true : result);
        } catch (err) {
          forms.showErrors(form, err, aliases);
        } finally {
          button.disabled = false;
        }
      });
      return h("div", {}, h("h2", { text: title }), intro ? h("p", { class: "muted" }, intro) : null, form);
    }, { wide, label: title });
  },
  /** A table: columns [{label, cell(row) -> node|string, class}]; `onRow(row)` makes rows clickable. */
  table(columns, rows, { onRow, rowClass, empty = "Nothing to show." } = {}) {
    const table = h("table", { class: "data" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class || "" }, c.label)))));
    const tbody = h("tbody");
    for (const row of rows) {
      const tr = h("tr", { class: [onRow ? "clickable" : "", rowClass ? rowClass(row) : ""].join(" ").trim() });
      if (onRow) {
        tr.tabIndex = 0;
        tr.addEventListener("click", () => onRow(row));
        tr.addEventListener("keydown", (e) => { if (e.key === "Enter") onRow(row); });
      }
      for (const c of columns) tr.append(h("td", { class: c.class || "" }, c.cell(row)));
      tbody.append(tr);
    }
    if (!rows.length) tbody.append(h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty)));
    table.append(tbody);
    return h("div", { class: "table-wrap" }, table);
  },
  badge(text, kind = "") { return h("span", { class: `badge ${kind}` }, text); },
  error(err) { return h("div", { class: "banner error", role: "alert" }, err.message || String(err)); },
};

// ------------------------------------------------------------ store choice

const STORE_KEY = "pharmo2o.store";

/**
 * The store a page works on: a store-bound user's own store, else the one chosen in the picker
 * (remembered for the tab). `allowAll` adds "All stores" (value ""), for the chain-wide reports.
 */
export async function storePicker(page, { allowAll = false, onChange } = {}) {
  const { user } = page;
  const stores = await page.stores();
  if (user.store_id && user.role !== "admin") {
    const mine = stores.find((s) => s.id === user.store_id);
    return { value: user.store_id, element: h("span", { class: "badge" }, mine ? mine.name : `store ${user.store_id}`) };
  }
  let value = sessionStorage.getItem(STORE_KEY) || "";
  if (value && !stores.some((s) => String(s.id) === value)) value = "";
  if (!value && !allowAll && stores.length) value = String(stores[0].id);
  const options = (allowAll ? [["", "All stores"]] : []).concat(stores.map((s) => [s.id, `${s.name} (${s.code})`]));
  const select = forms.select("store", options, { value, "aria-label": "Store" });
  const picker = { value: value ? Number(value) : null, element: h("label", {}, "Store", select) };
  select.addEventListener("change", () => {
    picker.value = select.value ? Number(select.value) : null;
    if (select.value) sessionStorage.setItem(STORE_KEY, select.value);
    if (onChange) onChange(picker.value);
  });
  return picker;
}
