// Catalogue: search products, create and edit them with the drug fields (the API's field errors shown
// next to each field), and import a CSV file in chunks with progress and a per-row error report.
import { api, ApiError, clear, fmt, forms, h, ui } from "/console/static/lib.js";

const RX = [["rx", "Rx · prescription"], ["otc_a", "OTC-A 甲类"], ["otc_b", "OTC-B 乙类"]];
const TEXT_FIELDS = [
  ["sku", "SKU", { required: true, maxlength: 64 }],
  ["barcode", "Barcode", { maxlength: 64, inputmode: "numeric" }],
  ["generic_name", "Generic name 通用名", { required: true, maxlength: 200 }],
  ["brand_name", "Trade name 商品名", { maxlength: 200 }],
  ["specification", "Strength / specification", { maxlength: 200 }],
  ["pack", "Pack", { maxlength: 100 }],
  ["dosage_form", "Dosage form 剂型", { maxlength: 100 }],
  ["approval_number", "Approval number 批准文号", { required: true, maxlength: 64, placeholder: "国药准字H20000001" }],
  ["manufacturer", "Manufacturer", { maxlength: 200 }],
  ["mah", "Marketing-authorisation holder", { maxlength: 200 }],
  ["category", "Category", { maxlength: 100 }],
  ["storage", "Storage conditions", { maxlength: 200 }],
];
const FLAGS = [["ephedrine", "Contains ephedrine 含麻黄碱"], ["online_banned", "On the online-sale ban list"],
  ["cold_chain", "Cold chain 冷链"], ["active", "Active (sold)"]];
export const CHUNK_ROWS = 100;
const CHUNK_BYTES = 256 * 1024;

function productFields(product) {
  const p = product || { active: true };
  const fields = TEXT_FIELDS.map(([name, label, opts]) => forms.field(label,
    forms.input(name, { value: p[name] ?? "", maxlength: opts.maxlength, placeholder: opts.placeholder, inputmode: opts.inputmode }),
    { name, required: opts.required }));
  fields.splice(8, 0,
    forms.field("Class", forms.select("rx_class", [["", "Choose…"], ...RX], { value: p.rx_class || "" }),
      { name: "rx_class", required: true }),
    forms.field("Price (¥)", forms.input("price_fen", { value: product ? fmt.yuan(p.price_fen) : "", inputmode: "decimal",
      placeholder: "12.50" }), { name: "price_fen", required: true, hint: "yuan with up to 2 decimals" }));
  for (const [name, label] of FLAGS) {
    fields.push(forms.field(label, h("input", { type: "checkbox", name, checked: Boolean(p[name]) }), { name, check: true }));
  }
  fields.push(forms.field("Package insert 说明书", h("textarea", { name: "package_insert", maxlength: 100000 },
    p.package_insert || ""), { name: "package_insert", wide: true }));
  return fields;
}

/** Form values -> the API's product body; `original` limits it to what changed (an edit). */
function productBody(values, form, original) {
  const body = {};
  for (const [name] of TEXT_FIELDS) body[name] = values[name].trim();
  body.barcode = body.barcode || null;
  body.rx_class = values.rx_class || null;
  body.price_fen = fmt.parseYuan(values.price_fen);
  for (const [name] of FLAGS) body[name] = values[name];
  body.package_insert = values.package_insert;
  if (body.price_fen === null && (original || values.price_fen.trim() !== "")) {
    forms.fieldError(form, "price_fen", "enter a price in yuan, e.g. 12.50");
    return null;
  }
  if (!original) {
    for (const k of Object.keys(body)) if (body[k] === "" || body[k] === null) delete body[k];
    return body;
  }
  const changed = {};
  for (const [k, v] of Object.entries(body)) {
    const before = original[k] ?? (typeof v === "boolean" ? false : k === "barcode" ? null : "");
    if (v !== before) changed[k] = v === "" && k === "rx_class" ? null : v;
  }
  return changed;
}

// ------------------------------------------------------------------ CSV

/** Split CSV text into raw records (quoted newlines kept inside their record). */
export function csvRecords(text) {
  const records = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') quoted = !quoted;
    else if (c === "\n" && !quoted) {
      records.push(text.slice(start, i).replace(/\r$/, ""));
      start = i + 1;
    }
  }
  if (start < text.length) records.push(text.slice(start).replace(/\r$/, ""));
  return records;
}

function csvCell(value) {
  const s = String(value ?? "");
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function importPanel(page) {
  const file = h("input", { type: "file", name: "file", accept: ".csv,text/csv" });
  const dry = h("input", { type: "checkbox", name: "dry_run" });
  const run = h("button", { type: "submit", class: "primary" }, "Import");
  const progress = h("progress", { max: 1, value: 0 });
  const progressText = h("span", { class: "muted", "data-progress": "" }, "");
  const progressRow = h("div", { class: "progress hidden" }, progress, progressText);
  const result = h("div", { "data-import-result": "" });
  const form = h("form", { class: "panel", novalidate: true },
    h("h2", {}, "Import products from CSV"),
    h("p", { class: "muted" }, "UTF-8 CSV with a header row of product fields (sku, generic_name, approval_number, " +
      "rx_class, price_fen, …). An existing SKU is updated with the row's non-empty cells; a new SKU creates a product."),
    h("div", { class: "form-error", role: "alert" }),
    h("div", { class: "toolbar" }, forms.field("File", file, { name: "file" }),
      h("label", { class: "check" }, dry, "Check only (dry run: nothing is saved)"), run),
    progressRow, result);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    forms.clearErrors(form);
    clear(result);
    const f = file.files[0];
    if (!f) { forms.fieldError(form, "file", "choose a .csv file"); return; }
    let text;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(await f.arrayBuffer());
    } catch {
      forms.fieldError(form, "file", "the file is not UTF-8: save it as 'CSV UTF-8' and try again");
      return;
    }
    const records = csvRecords(text.replace(/^\uFEFF/, ""));
    if (!records.length || !records[0].trim()) { forms.fieldError(form, "file", "the file is empty"); return; }
    const header = records[0];
    const data = records.slice(1);
    while (data.length && !data[data.length - 1].trim()) data.pop();
    const totals = { rows: 0, created: 0, updated: 0, failed: 0, errors: [], stopped: null };
    run.disabled = true;
    progressRow.classList.remove("hidden");
    progress.max = Math.max(1, data.length);
    progress.value = 0;
    let sent = 0;
    try {
      while (sent < data.length) {
        const chunk = [];
        let bytes = header.length;
        while (sent + chunk.length < data.length && chunk.length < CHUNK_ROWS &&
               (chunk.length === 0 || bytes + data[sent + chunk.length].length < CHUNK_BYTES)) {
          bytes += data[sent + chunk.length].length + 1;
          chunk.push(data[sent + chunk.length]);
        }
        progressText.textContent = `rows ${sent + 1}–${sent + chunk.length} of ${data.length}…`;
        const report = await api.request("POST", "/api/v1/products/import", {
          query: { dry_run: dry.checked || undefined, row_offset: sent }, contentType: "text/csv; charset=utf-8",
          body: `${header}\n${chunk.join("\n")}\n` });
        for (const k of ["rows", "created", "updated", "failed"]) totals[k] += report[k];
        totals.errors.push(...report.errors);
        sent += chunk.length;
        progress.value = sent;
        if (report.stopped) { totals.stopped = report.stopped; break; }
      }
      progressText.textContent = `${sent} of ${data.length} rows processed`;
    } catch (err) {
      if (err instanceof ApiError && err.fields.some((x) => x.field === "header")) {
        forms.showErrors(form, err, { header: "file" });
      } else {
        forms.showErrors(form, err);
      }
    } finally {
      run.disabled = false;
    }
    if (!totals.rows && !totals.errors.length) return;
    const summary = h("div", { class: `banner ${totals.failed ? "warn" : "info"}`, "data-summary": "" },
      `${dry.checked ? "Dry run: would create" : "Created"} ${totals.created}, ` +
      `${dry.checked ? "would update" : "updated"} ${totals.updated}, refused ${totals.failed} of ${totals.rows} rows.`,
      totals.stopped ? ` Reading stopped: ${totals.stopped}` : "");
    result.append(summary);
    if (totals.errors.length) {
      const csv = ["row,sku,field,message", ...totals.errors.map((x) => [x.row, x.sku, x.field, x.message].map(csvCell).join(","))].join("\r\n");
      const link = h("a", { href: URL.createObjectURL(new Blob(["\uFEFF" + csv], { type: "text/csv" })),
        download: `import-errors-${f.name}` }, "Download the error report (CSV)");
      page.onCleanup(() => URL.revokeObjectURL(link.href));
      result.append(h("h3", {}, "Refused rows"), ui.table([
        { label: "Row", cell: (x) => String(x.row), class: "num" },
        { label: "SKU", cell: (x) => x.sku },
        { label: "Field", cell: (x) => x.field },
        { label: "Problem", cell: (x) => x.message },
      ], totals.errors), h("p", {}, link));
    }
    if (!dry.checked && (totals.created || totals.updated)) page.reload();
  });
  return form;
}

// ------------------------------------------------------------------ page

export async function render(page) {
  const { root } = page;
  const q = forms.input("q", { type: "search", placeholder: "Name, SKU or barcode", "aria-label": "Search" });
  const rx = forms.select("rx_class", [["", "All classes"], ...RX], { "aria-label": "Class" });
  const active = forms.select("active", [["", "Active and inactive"], ["true", "Active"], ["false", "Inactive"]], { "aria-label": "Active" });
  const host = h("div");
  const more = h("div", { class: "more" });
  let items = [];
  let cursor = null;

  async function load(reset = true) {
    if (reset) { items = []; cursor = null; }
    const pg = await api.get("/api/v1/products", { q: q.value.trim(), rx_class: rx.value, active: active.value, limit: 50, cursor });
    items = items.concat(pg.items);
    cursor = pg.next_cursor;
    clear(host).append(ui.table([
      { label: "SKU", cell: (p) => p.sku, class: "nowrap" },
      { label: "Product", cell: (p) => [h("strong", {}, p.generic_name), " ", p.brand_name ? `(${p.brand_name})` : "",
        h("div", { class: "muted" }, [p.specification, p.pack].filter(Boolean).join(" · "))] },
      { label: "Class", cell: (p) => ui.badge(fmt.rxClass(p.rx_class), p.rx_class) },
      { label: "Approval no.", cell: (p) => p.approval_number, class: "nowrap" },
      { label: "Price", cell: (p) => fmt.money(p.price_fen), class: "num" },
      { label: "Flags", cell: (p) => h("div", { class: "chips" },
        p.ephedrine ? ui.badge("ephedrine", "warn") : null, p.online_banned ? ui.badge("online ban", "bad") : null,
        p.cold_chain ? ui.badge("cold chain") : null, p.active ? null : ui.badge("inactive")) },
    ], items, { onRow: edit, empty: "No product matches." }));
    clear(more);
    if (cursor) more.append(h("button", { type: "button", onclick: () => load(false) }, "Load more"));
  }
  page.reload = () => load();

  async function create() {
    const done = await ui.formDialog({
      title: "New product", wide: true, fields: productFields(null), submitLabel: "Create product",
      submit: async (values, form) => {
        const body = productBody(values, form, null);
        return body ? api.post("/api/v1/products", body) : false;
      },
    });
    if (done) { ui.toast(`Created ${done.generic_name} (${done.sku})`); await load(); }
  }

  async function edit(product) {
    const full = await api.get(`/api/v1/products/${product.id}`);
    const done = await ui.formDialog({
      title: `Edit ${full.generic_name}`, wide: true, fields: productFields(full), submitLabel: "Save changes",
      submit: async (values, form) => {
        const body = productBody(values, form, full);
        if (body === null) return false;
        if (!Object.keys(body).length) return full;
        return api.patch(`/api/v1/products/${full.id}`, body);
      },
    });
    if (done) { ui.toast(`Saved ${done.generic_name} (${done.sku})`); await load(); }
  }

  const search = h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); load(); } },
    h("label", { class: "grow" }, "Search", q), h("label", {}, "Class", rx), h("label", {}, "Status", active),
    h("button", { type: "submit" }, "Search"));
  rx.addEventListener("change", () => load());
  active.addEventListener("change", () => load());
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Catalogue"),
      h("div", { class: "right" }, h("button", { type: "button", class: "primary", onclick: create }, "New product"))),
    search, host, more, importPanel(page));
  await load();
}
