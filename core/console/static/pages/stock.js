// Stock: on-hand per product and lot with expiry (expired lots and lots expiring within 90 days
// highlighted); receive a delivery, adjust a lot with a reason, and a product's movement history.
import { api, clear, fmt, forms, h, storePicker, ui } from "/console/static/lib.js";

export const NEAR_DAYS = 90;
const MANAGERS = ["admin", "store_manager"];
const ADJUST_REASONS = ["Stock count difference (盘点差异)", "Damaged (破损)", "Lost (丢失)",
  "Quarantined for quality (质量问题)"];
const KIND = { receipt: "receipt", adjustment: "adjustment", sale: "sale", reservation: "reserved", release: "released",
  transfer_out: "transfer out", transfer_in: "transfer in", return: "returned" };

function lotState(lot) {
  const days = fmt.daysUntil(lot.expiry);
  if (lot.expired || days <= 0) return { cls: "expired", days, badge: ui.badge("expired", "expired") };
  if (days <= NEAR_DAYS) return { cls: "expiring", days, badge: ui.badge(`${days} d left`, "expiring") };
  return { cls: "", days, badge: h("span", { class: "muted" }, `${days} d`) };
}

/** Find a product by barcode, SKU or name: resolves {id, label} or null. Used by the receive form. */
function productFinder() {
  const input = forms.input("product_query", { placeholder: "Scan a barcode or type a name / SKU", autocomplete: "off" });
  const hidden = h("input", { type: "hidden", name: "product_id" });
  const chosen = h("div", { class: "muted", "data-chosen": "" }, "No product chosen.");
  const results = h("div", { class: "chips", "data-results": "" });
  async function search() {
    clear(results);
    const q = input.value.trim();
    if (!q) return;
    try {
      const page = await api.get("/api/v1/products", { q, limit: 10, active: true });
      const exact = page.items.filter((p) => p.barcode === q || p.sku === q);
      const matches = exact.length === 1 ? exact : page.items;
      if (matches.length === 1) return choose(matches[0]);
      if (!matches.length) { results.append(h("span", { class: "muted" }, "No product matches.")); return; }
      for (const p of matches) {
        results.append(h("button", { type: "button", class: "small", onclick: () => choose(p) },
          `${p.generic_name} ${p.specification} (${p.sku})`));
      }
    } catch (err) {
      results.append(h("span", { class: "error" }, err.message));
    }
  }
  function choose(p) {
    hidden.value = String(p.id);
    chosen.textContent = `${p.generic_name} ${p.specification} · ${p.sku}${p.barcode ? ` · ${p.barcode}` : ""}`;
    chosen.classList.remove("muted");
    clear(results);
  }
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); search(); } });
  const wrap = forms.field("Product (barcode, SKU or name)", h("div", { class: "toolbar" }, input,
    h("button", { type: "button", onclick: search }, "Search")), { name: "product_id", required: true, wide: true });
  wrap.append(hidden, results, chosen);
  return wrap;
}

export async function render(page) {
  const { root, user } = page;
  const canAdjust = MANAGERS.includes(user.role);
  const tableHost = h("div");
  const moreHost = h("div", { class: "more" });
  const onlyNear = h("input", { type: "checkbox", name: "only_near" });
  let rows = [];
  let cursor = null;
  let picker;

  function lotRows() {
    const out = [];
    for (const product of rows) {
      const lots = onlyNear.checked ? product.lots.filter((l) => lotState(l).cls) : product.lots;
      lots.forEach((lot, i) => out.push({ product, lot, first: i === 0, span: lots.length }));
    }
    return out;
  }

  function draw() {
    const table = h("table", { class: "data" }, h("thead", {}, h("tr", {},
      ["Product", "Lot", "Expiry", "", "On hand", "Reserved", "Available", ""].map((t, i) =>
        h("th", { class: i >= 4 && i <= 6 ? "num" : "" }, t)))));
    const body = h("tbody");
    const data = lotRows();
    for (const { product, lot, first, span } of data) {
      const st = lotState(lot);
      const tr = h("tr", { class: st.cls, "data-lot": lot.lot_no, "data-product": product.product_id });
      if (first) {
        tr.append(h("td", { class: "product", rowspan: span },
          h("strong", {}, product.generic_name), " ", h("span", { class: "muted" }, product.specification),
          h("div", { class: "muted" }, product.sku),
          h("div", { class: "muted" }, `total ${product.on_hand} · available ${product.available}`),
          h("button", { type: "button", class: "small", onclick: () => history(product) }, "History")));
      }
      tr.append(h("td", {}, lot.lot_no), h("td", { class: "nowrap" }, lot.expiry), h("td", {}, st.badge),
        h("td", { class: "num" }, String(lot.on_hand)), h("td", { class: "num" }, String(lot.reserved)),
        h("td", { class: "num" }, String(lot.available)),
        h("td", {}, canAdjust ? h("button", { type: "button", class: "small", onclick: () => adjust(product, lot) }, "Adjust") : null));
      body.append(tr);
    }
    if (!data.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "empty" },
      onlyNear.checked ? "No expired or near-expiry lots in what is loaded." : "No stock in this store.")));
    table.append(body);
    clear(tableHost).append(h("div", { class: "table-wrap" }, table));
    clear(moreHost);
    if (cursor) moreHost.append(h("button", { type: "button", onclick: () => load(false) }, "Load more"));
  }

  async function load(reset = true) {
    if (!picker.value) { clear(tableHost).append(h("p", { class: "empty" }, "Choose a store.")); return; }
    if (reset) { rows = []; cursor = null; }
    const page_ = await api.get(`/api/v1/stores/${picker.value}/stock`, { limit: 50, cursor });
    rows = rows.concat(page_.items);
    cursor = page_.next_cursor;
    draw();
  }

  async function receive() {
    const expiry = forms.input("expiry", { type: "date", min: fmt.today() });
    const done = await ui.formDialog({
      title: "Receive a delivery",
      intro: "Books the units into the lot (created on its first receipt).",
      wide: true,
      fields: [productFinder(),
        forms.field("Lot number", forms.input("lot_no", { maxlength: 64, autocomplete: "off" }), { required: true }),
        forms.field("Expiry date", expiry, { required: true }),
        forms.field("Quantity (units)", forms.input("quantity", { type: "number", min: 1, step: 1, inputmode: "numeric" }), { required: true }),
        forms.field("Delivery note / PO (optional)", forms.input("reference", { maxlength: 100 }), {})],
      submitLabel: "Receive",
      submit: async (v, form) => {
        if (!v.product_id) { forms.fieldError(form, "product_id", "search and choose the product"); return false; }
        const qty = /^\d+$/.test(v.quantity) ? Number(v.quantity) : null;
        if (!qty) { forms.fieldError(form, "quantity", "a whole number of units, at least 1"); return false; }
        if (!v.expiry) { forms.fieldError(form, "expiry", "choose the expiry date printed on the pack"); return false; }
        return api.post(`/api/v1/stores/${picker.value}/stock/receipts`, {
          product_id: Number(v.product_id), lot_no: v.lot_no.trim(), expiry: v.expiry, quantity: qty,
          reference: v.reference.trim() || null });
      },
    });
    if (done) { ui.toast(`Received ${done.movement.on_hand_delta} units into lot ${done.lot.lot_no}`); await load(); }
  }

  async function adjust(product, lot) {
    const preset = forms.select("preset", [["", "Choose a reason…"], ...ADJUST_REASONS.map((r) => [r, r]), ["other", "Other"]]);
    const reason = forms.input("reason", { maxlength: 500 });
    preset.addEventListener("change", () => { if (preset.value && preset.value !== "other") reason.value = preset.value; });
    const done = await ui.formDialog({
      title: `Adjust lot ${lot.lot_no}`,
      intro: `${product.generic_name} ${product.specification}: ${lot.on_hand} on hand, ${lot.reserved} reserved. ` +
        "Enter the change (negative to remove units); the adjustment is audited.",
      fields: [forms.field("Change in units (e.g. -2 or 5)", forms.input("delta", { type: "number", step: 1 }), { required: true }),
        forms.field("Common reasons", preset, { name: "preset" }),
        forms.field("Reason", reason, { required: true, wide: true })],
      submitLabel: "Adjust",
      submit: async (v, form) => {
        if (!/^-?\d+$/.test(v.delta) || Number(v.delta) === 0) {
          forms.fieldError(form, "delta", "a whole number of units, not zero"); return false;
        }
        if (!v.reason.trim()) { forms.fieldError(form, "reason", "a reason is required"); return false; }
        return api.post(`/api/v1/stores/${picker.value}/stock/adjustments`,
          { lot_id: lot.lot_id, delta: Number(v.delta), reason: v.reason.trim() });
      },
    });
    if (done) { ui.toast(`Lot ${lot.lot_no} now has ${done.lot.on_hand} on hand`); await load(); }
  }

  async function history(product) {
    const lotNames = Object.fromEntries(product.lots.map((l) => [l.lot_id, l.lot_no]));
    let before = null;
    const host = h("div");
    const more = h("div", { class: "more" });
    const items = [];
    async function next() {
      const pg = await api.get(`/api/v1/stores/${picker.value}/stock/movements`,
        { product_id: product.product_id, limit: 50, cursor: before });
      items.push(...pg.items);
      before = pg.next_cursor;
      clear(host).append(ui.table([
        { label: "When", cell: (m) => fmt.dateTime(m.created_at), class: "nowrap" },
        { label: "Kind", cell: (m) => KIND[m.kind] || m.kind },
        { label: "Lot", cell: (m) => lotNames[m.lot_id] || `#${m.lot_id}` },
        { label: "On hand", cell: (m) => (m.on_hand_delta > 0 ? `+${m.on_hand_delta}` : String(m.on_hand_delta)), class: "num" },
        { label: "Reserved", cell: (m) => (m.reserved_delta > 0 ? `+${m.reserved_delta}` : String(m.reserved_delta)), class: "num" },
        { label: "Reason / reference", cell: (m) => [m.reason, m.reference, m.order_id ? `order #${m.order_id}` : ""].filter(Boolean).join(" · ") },
        { label: "By", cell: (m) => m.actor },
      ], items, { empty: "No movements." }));
      clear(more);
      if (before) more.append(h("button", { type: "button", onclick: next }, "Load more"));
    }
    await next();
    await ui.dialog((close) => h("div", { "data-history": product.product_id },
      h("h2", {}, `Movements · ${product.generic_name} ${product.specification}`),
      h("p", { class: "muted" }, "Newest first. Every change of on-hand or reserved units is listed."),
      host, more,
      h("div", { class: "actions" }, h("button", { type: "button", onclick: () => close() }, "Close"))),
    { wide: true, label: "Movement history" });
  }

  picker = await storePicker(page, { onChange: () => load() });
  onlyNear.addEventListener("change", draw);
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Stock"),
      h("div", { class: "right" }, h("button", { type: "button", class: "primary", onclick: receive }, "Receive delivery"))),
    h("div", { class: "toolbar" }, picker.element,
      h("label", { class: "check" }, onlyNear, `Only expired or expiring within ${NEAR_DAYS} days`)),
    h("div", { class: "legend" }, h("span", { class: "swatch-expired" }, "expired: not sellable"),
      h("span", { class: "swatch-near" }, `expires within ${NEAR_DAYS} days`)),
    tableHost, moreHost);
  await load();
}
