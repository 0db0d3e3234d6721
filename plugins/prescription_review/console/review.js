// prescription_review: the pharmacist's review page. The queue of prescriptions waiting for review (oldest
// first, with how long each has waited); a prescription opened beside its order's lines, with the uploaded
// document; claim, approve with a note, or reject with a coded reason and the text the customer will see.
// Every datum comes from the plugin's API with the signed-in user's token; opening a prescription or its
// document is logged by the server.
import { api, ApiError, clear, fmt, forms, h, session, storePicker, ui } from "/console/static/lib.js";

export const POLL_MS = 10000;
const SLOW_MIN = 15;
const LATE_MIN = 30;
const STYLE = "/console/plugins/prescription_review/review.css";
const STATUSES = [["pending", "Waiting for review"], ["approved", "Approved"], ["rejected", "Rejected"],
  ["withdrawn", "Withdrawn (order cancelled)"], ["", "All"]];
const RELATIONSHIP = { self: "本人 self", spouse: "配偶 spouse", parent: "父母 parent", child: "子女 child",
  relative: "亲属 relative", guardian: "监护人 guardian", other: "其他 other" };

function loadStyle() {
  if (document.querySelector(`link[href="${STYLE}"]`)) return;
  document.head.append(h("link", { rel: "stylesheet", href: STYLE }));
}

function statusBadge(status) { return ui.badge(status, status); }

function waited(p) {
  return p.status === "pending" ? fmt.since(p.submitted_at) : p.waiting_seconds;
}

/** The document's bytes with the bearer token (an <img src> could not send it), as a data: URL. */
async function documentUrl(url) {
  const resp = await fetch(url, { headers: { Authorization: `Bearer ${session.token()}` }, credentials: "omit",
    cache: "no-store" });
  if (!resp.ok) {
    let problem = null;
    try { problem = await resp.json(); } catch { /* not JSON */ }
    if (resp.status === 401) window.dispatchEvent(new CustomEvent("pharmo2o:signed-out"));
    throw new ApiError(resp.status, problem);
  }
  const blob = await resp.blob();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error("the document could not be read"));
    reader.readAsDataURL(blob);
  });
}

export async function render(page) {
  loadStyle();
  const { root, user } = page;
  const live = h("span", { class: "live", "data-live": "" }, "connecting…");
  const status = forms.select("status", STATUSES, { value: "pending", "aria-label": "Status" });
  const queueEl = h("div", { class: "rx-queue" });
  const detailEl = h("div", { class: "rx-detail-wrap" });
  let openId = null;
  let reasons = null;
  let picker = null;

  const canDecide = user.role === "pharmacist";

  async function refresh() {
    try {
      const list = await api.get("/api/v1/prescriptions", {
        status: status.value || undefined, store_id: picker && picker.value ? picker.value : undefined, limit: 100 });
      drawQueue(list.items);
      live.textContent = `live · updated ${fmt.time()}`;
      live.classList.remove("stale");
    } catch (err) {
      live.textContent = `not updating: ${err.message}`;
      live.classList.add("stale");
    }
  }

  function drawQueue(items) {
    const table = ui.table([
      { label: "#", cell: (p) => `#${p.id}` },
      { label: "Order", cell: (p) => `#${p.order_id}` },
      { label: "Patient", cell: (p) => p.patient_name },
      { label: "Rx lines", class: "num", cell: (p) => String(p.rx_lines) },
      { label: "Total", class: "num", cell: (p) => fmt.money(p.order_total_fen) },
      { label: "Issued", cell: (p) => [p.issue_date, " ", p.expired ? ui.badge("expired", "bad") : null] },
      { label: p0Label(), cell: (p) => {
        const mins = waited(p) / 60;
        return h("span", { class: p.status === "pending" ? (mins >= LATE_MIN ? "late" : mins >= SLOW_MIN ? "slow" : "") : "",
          "data-waiting": String(Math.floor(waited(p))) }, fmt.age(waited(p)));
      } },
      { label: "Status", cell: (p) => [statusBadge(p.status), p.claimed_by ? [" ", ui.badge(`claimed by ${p.claimed_by}`)] : null] },
    ], items, {
      onRow: (p) => open(p.id),
      rowClass: (p) => (p.id === openId ? "open" : ""),
      empty: status.value === "pending" ? "No prescription is waiting for review." : "Nothing to show.",
    });
    table.querySelectorAll("tbody tr.clickable").forEach((tr, i) => { tr.dataset.prescription = String(items[i].id); });
    clear(queueEl).append(h("div", { class: "panel" },
      h("h2", {}, status.value === "pending" ? `Queue · ${items.length} waiting (oldest first)` : `Prescriptions · ${items.length}`),
      table));
  }

  function p0Label() { return status.value === "pending" ? "Waiting" : "Waited"; }

  async function open(id) {
    openId = id;
    queueEl.querySelectorAll("tr[data-prescription]").forEach((tr) => {
      tr.classList.toggle("open", tr.dataset.prescription === String(id));
    });
    clear(detailEl).append(h("p", { class: "muted" }, "Opening…"));
    try {
      const p = await api.get(`/api/v1/prescriptions/${id}`);
      if (openId !== id) return;
      drawDetail(p);
    } catch (err) {
      clear(detailEl).append(ui.error(err));
    }
  }

  function drawDetail(p) {
    const frame = h("div", { class: "frame" }, h("div", { class: "placeholder" }, "Loading the document…"));
    const tools = h("div", { class: "tools" },
      h("span", { class: "muted small" }, `${p.document.media_type} · ${Math.ceil(p.document.size_bytes / 1024)} KiB · SHA-256 ${p.document.sha256.slice(0, 12)}…`));
    const docPanel = h("section", { class: "panel rx-doc", "aria-label": "Prescription document" },
      h("h3", {}, "Prescription document"), frame, tools);
    documentUrl(p.document.url).then((dataUrl) => {
      if (openId !== p.id) return;
      clear(frame);
      if (p.document.media_type.startsWith("image/")) {
        const img = h("img", { src: dataUrl, alt: `Prescription #${p.id}`, class: "rx-doc-img" });
        img.addEventListener("load", () => { img.dataset.loaded = "true"; });
        img.addEventListener("click", () => frame.classList.toggle("zoomed"));
        frame.append(img);
        tools.append(h("button", { type: "button", class: "small", onclick: () => frame.classList.toggle("zoomed") }, "Zoom"));
      } else {
        frame.append(h("div", { class: "placeholder" }, "PDF document: download it to read it.",
          h("br"), h("a", { href: dataUrl, download: `prescription-${p.id}.pdf`, class: "button", "data-pdf": "" }, "Download PDF")));
      }
    }).catch((err) => { clear(frame).append(h("div", { class: "placeholder" }, `The document cannot be shown: ${err.message}`)); });

    const facts = h("dl", { class: "rx-facts" },
      fact("Patient", `${p.patient.name}`),
      fact("ID number", p.patient.id_number),
      fact("Buyer is", RELATIONSHIP[p.patient.relationship] || p.patient.relationship),
      fact("Prescriber", p.prescriber),
      fact("Institution", p.institution),
      fact("Prescription no.", p.prescription_number),
      fact("Issued", p.issue_date),
      fact("Extension note", p.extension_note || "—"),
      fact("Valid until", [p.valid_until, " ", p.valid_today ? ui.badge("valid today", "good") : ui.badge("not valid today", "bad")]),
      fact("Submitted", `${fmt.dateTime(p.submitted_at)} · waited ${fmt.age(waited(p))}`));

    const lines = ui.table([
      { label: "Ordered product", cell: (l) => [l.product_name, " ", l.rx_class === "rx" ? ui.badge("Rx", "rx") : ui.badge(fmt.rxClass(l.rx_class), l.rx_class)] },
      { label: "Ordered", class: "num", cell: (l) => String(l.quantity) },
      { label: "Prescribed", class: "num", cell: (l) => (l.prescribed === null ? "—" : String(l.prescribed)) },
      { label: "Covered", cell: (l) => (l.covered === null ? h("span", { class: "muted" }, "no Rx")
        : l.covered ? h("span", { class: "rx-covered" }, "✓ covered") : h("span", { class: "rx-uncovered" }, "✗ not covered")) },
    ], p.order.lines);
    const items = ui.table([
      { label: "Prescribed item", cell: (i) => i.product_name },
      { label: "Qty", class: "num", cell: (i) => String(i.quantity) },
      { label: "Dosage", cell: (i) => i.dosage || "—" },
    ], p.items);

    const problems = (p.problems || []).length
      ? h("div", { class: "banner warn", "data-problems": "" }, h("strong", {}, "Stands against approval:"),
        h("ul", { class: "rx-problems" }, p.problems.map((x) => h("li", {}, ui.badge(x.code, "warn"), " ", x.message))))
      : null;

    const actions = h("div", { class: "rx-actions" });
    if (p.status === "pending" && canDecide) {
      const claimText = p.claim ? (p.claim.mine ? "Claimed by you" : `Claimed by ${p.claim.actor}`) : "Not claimed";
      actions.append(
        h("span", { class: "muted small", "data-claim": p.claim ? p.claim.actor : "" }, claimText),
        h("span", { class: "grow" }),
        h("button", { type: "button", "data-action": "claim", onclick: () => claim(p) }, p.claim && p.claim.mine ? "Renew claim" : "Claim"),
        h("button", { type: "button", class: "danger", "data-action": "reject", onclick: () => reject(p) }, "Reject…"),
        h("button", { type: "button", class: "primary", "data-action": "approve", onclick: () => approve(p) }, "Approve…"));
    } else if (p.status !== "pending") {
      actions.append(h("div", { class: `banner ${p.status === "approved" ? "info" : "error"}`, "data-outcome": p.status },
        `${p.status} by ${p.decided_by || "the system"} at ${fmt.dateTime(p.decided_at)}`,
        p.reason_code ? ` · ${p.reason_label} — “${p.customer_message}”` : ""));
    }

    const history = (p.decisions || []).length ? h("div", { class: "rx-section" }, h("h3", {}, "Review history"),
      h("ol", { class: "rx-history" }, p.decisions.map((d) => h("li", {},
        `${fmt.dateTime(d.created_at)} · ${d.action} · ${d.actor}${d.licence_number ? ` (licence ${d.licence_number})` : ""}`
        + `${d.reason_code ? ` · ${d.reason_code}` : ""}${d.note ? ` · ${d.note}` : ""}`)))) : null;

    const info = h("section", { class: "panel", "aria-label": "Prescription and order" },
      h("div", { class: "rx-head" }, h("h2", {}, `Prescription #${p.id}`), statusBadge(p.status),
        h("span", { class: "muted" }, `order #${p.order.id} · ${p.order.channel} · ${fmt.status(p.order.status)} · ${fmt.money(p.order.total_fen)}`)),
      problems, facts,
      h("div", { class: "rx-section" }, h("h3", {}, "Order lines"), lines),
      h("div", { class: "rx-section" }, h("h3", {}, "Prescribed"), items),
      actions, history);
    clear(detailEl).append(h("div", { class: "rx-detail", "data-detail": String(p.id), "data-status": p.status }, docPanel, info));
  }

  function fact(label, value) {
    return [h("dt", {}, label), h("dd", {}, value)];
  }

  async function claim(p) {
    try {
      await api.post(`/api/v1/prescriptions/${p.id}/claim`);
      ui.toast(`Prescription #${p.id} is yours for a while`);
    } catch (err) {
      ui.toast(err.message, "error");
    }
    await Promise.all([open(p.id), refresh()]);
  }

  async function approve(p) {
    const done = await ui.formDialog({
      title: `Approve prescription #${p.id}`,
      intro: `Order #${p.order.id} may then be paid. Approved by ${user.name}; another staff member dispenses.`,
      fields: [forms.field("Note (internal, kept with the decision)", h("textarea", { name: "note", maxlength: 1000 }), { name: "note", wide: true })],
      submitLabel: "Approve",
      submit: (values) => api.post(`/api/v1/prescriptions/${p.id}/approve`, { note: values.note.trim() || null }),
    });
    if (done) { ui.toast(`Prescription #${p.id} approved`); await Promise.all([open(p.id), refresh()]); }
  }

  async function reject(p) {
    if (!reasons) reasons = (await api.get("/api/v1/prescriptions/reasons")).items;
    const suggested = (p.problems || []).map((x) => x.code);
    const first = reasons.find((r) => suggested.includes(r.code)) || reasons[0];
    const select = forms.select("reason_code", reasons.map((r) => [r.code, `${r.label} (${r.code})`]), { value: first.code });
    const message = h("textarea", { name: "message", maxlength: 500 });
    message.value = first.customer_text;
    let edited = false;
    message.addEventListener("input", () => { edited = true; });
    select.addEventListener("change", () => {
      const r = reasons.find((x) => x.code === select.value);
      if (!edited || !message.value.trim()) { message.value = r.code === "other" ? "" : r.customer_text; edited = false; }
    });
    const done = await ui.formDialog({
      title: `Reject prescription #${p.id}`,
      intro: `Order #${p.order.id} is cancelled and its stock released; the customer is told the reason below and may order again.`,
      fields: [
        forms.field("Reason", select, { name: "reason_code", required: true, wide: true }),
        forms.field("Shown to the customer", message, { name: "message", required: true, wide: true }),
        forms.field("Note (internal)", h("textarea", { name: "note", maxlength: 1000 }), { name: "note", wide: true }),
      ],
      submitLabel: "Reject and cancel the order",
      danger: true,
      submit: (values, form) => {
        if (!values.message.trim()) { forms.fieldError(form, "message", "write what the customer will read"); return false; }
        return api.post(`/api/v1/prescriptions/${p.id}/reject`, {
          reason_code: values.reason_code, message: values.message.trim(), note: values.note.trim() || null });
      },
    });
    if (done) { ui.toast(`Prescription #${p.id} rejected; order #${p.order.id} cancelled`); await Promise.all([open(p.id), refresh()]); }
  }

  if (!user.store_id) picker = await storePicker(page, { onChange: refresh });
  status.addEventListener("change", () => { refresh(); });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Prescription review"), h("div", { class: "right" }, live)),
    h("p", { class: "muted" }, "先方后药 — prescription first, then drug. Open a prescription to read it beside the order; every opening is logged."),
    h("div", { class: "toolbar" }, picker ? picker.element : null, h("label", {}, "Show", status)),
    queueEl, detailEl);
  await refresh();
  page.every(POLL_MS, refresh);
}
