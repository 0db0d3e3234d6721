// Store operations: the store's open orders as a live queue (polled every few seconds) with how long
// each has waited; mark ready / dispatch, hand over with the pickup code, cancel and refund with a reason.
import { api, clear, fmt, forms, h, storePicker, ui } from "/console/static/lib.js";

export const POLL_MS = 5000;
const LANES = [
  { status: "awaiting_payment", title: "New · awaiting payment" },
  { status: "awaiting_review", title: "Awaiting review" },
  { status: "paid", title: "Paid · to prepare" },
  { status: "ready", title: "Ready for pickup" },
  { status: "dispatched", title: "Dispatched" },
];
const SLOW_MIN = 15;
const LATE_MIN = 30;
const CANCEL_REASONS = ["Customer asked to cancel", "Out of stock", "Prescription not provided", "Duplicate order"];
const REFUND_REASONS = ["Customer returned the goods (quality issue)", "Order could not be fulfilled",
  "Wrong item prepared", "Charged twice"];
const MANAGERS = ["admin", "store_manager"];

/** When an order started waiting in its current state. */
export function waitingSince(order) {
  if (order.status === "paid") return order.paid_at || order.created_at;
  if (order.status === "ready" || order.status === "dispatched") return order.updated_at;
  return order.created_at;
}

function reasonField(presets) {
  const select = forms.select("preset", [["", "Choose a reason…"], ...presets.map((r) => [r, r]), ["other", "Other (write below)"]]);
  const text = forms.input("reason", { placeholder: "Reason", maxlength: 500 });
  select.addEventListener("change", () => {
    if (select.value && select.value !== "other") text.value = select.value;
    else if (select.value === "other") { text.value = ""; text.focus(); }
  });
  return [forms.field("Common reasons", select, { name: "preset", wide: true }),
    forms.field("Reason (recorded in the audit log)", text, { name: "reason", required: true, wide: true })];
}

export async function render(page) {
  const { root, user } = page;
  const canRefund = MANAGERS.includes(user.role);
  const lanesEl = h("div", { class: "lanes" });
  const live = h("span", { class: "live", "data-live": "" }, "connecting…");
  const lookup = forms.input("order", { placeholder: "Order number", inputmode: "numeric", "aria-label": "Order number", size: 10 });
  const found = h("div", { class: "found" });
  let picker;

  async function act(order, path, body, message) {
    try {
      await api.post(`/api/v1/orders/${order.id}/${path}`, body);
      ui.toast(message);
      await refresh();
    } catch (err) {
      ui.toast(err.message, "error");
    }
  }

  async function handOver(order) {
    const pickup = order.fulfilment === "pickup";
    const done = await ui.formDialog({
      title: `Hand over order #${order.id}`,
      intro: pickup ? "Ask the customer for the 6-digit pickup code from their order confirmation."
        : "Confirm the delivery was received by the customer.",
      fields: pickup ? [forms.field("Pickup code", forms.input("pickup_code", { inputmode: "numeric", autocomplete: "off", maxlength: 12 }),
        { name: "pickup_code", required: true, wide: true })] : [],
      submitLabel: pickup ? "Hand over" : "Mark delivered",
      submit: async (values, form) => {
        if (pickup && !values.pickup_code.trim()) {
          forms.fieldError(form, "pickup_code", "enter the customer's pickup code");
          return false;
        }
        return api.post(`/api/v1/orders/${order.id}/complete`, pickup ? { pickup_code: values.pickup_code.trim() } : {});
      },
    });
    if (done) { ui.toast(`Order #${order.id} handed over`); await refresh(); }
  }

  async function withReason(order, kind) {
    const refund = kind === "refund";
    const done = await ui.formDialog({
      title: `${refund ? "Refund" : "Cancel"} order #${order.id}`,
      intro: refund ? `Refund ${fmt.money(order.total_fen)} to the customer. Goods not yet handed over go back to stock.`
        : "The reserved stock is released.",
      fields: reasonField(refund ? REFUND_REASONS : CANCEL_REASONS),
      submitLabel: refund ? "Refund" : "Cancel order",
      danger: true,
      submit: async (values, form) => {
        if (!values.reason.trim()) { forms.fieldError(form, "reason", "a reason is required"); return false; }
        return api.post(`/api/v1/orders/${order.id}/${kind}`, { reason: values.reason.trim() });
      },
    });
    if (done) { ui.toast(`Order #${order.id} ${refund ? "refunded" : "cancelled"}`); await refresh(); }
  }

  function card(order) {
    const waited = fmt.since(waitingSince(order));
    const mins = waited / 60;
    const open = LANES.some((l) => l.status === order.status);
    const cls = open ? (mins >= LATE_MIN ? "late" : mins >= SLOW_MIN ? "slow" : "") : "";
    const buttons = [];
    if (order.status === "paid") {
      buttons.push(h("button", { class: "small primary", onclick: () => act(order, "fulfil", undefined,
        `Order #${order.id} ${order.fulfilment === "pickup" ? "is ready for pickup" : "is dispatched"}`) },
      order.fulfilment === "pickup" ? "Mark ready" : "Dispatch"));
    }
    if (order.status === "ready" || order.status === "dispatched") {
      buttons.push(h("button", { class: "small primary", onclick: () => handOver(order) },
        order.status === "ready" ? "Hand over" : "Delivered"));
    }
    if (order.status === "awaiting_payment" || order.status === "awaiting_review") {
      buttons.push(h("button", { class: "small", onclick: () => withReason(order, "cancel") }, "Cancel"));
    }
    if (canRefund && ["paid", "ready", "dispatched", "completed"].includes(order.status)) {
      buttons.push(h("button", { class: "small", onclick: () => withReason(order, "refund") }, "Refund"));
    }
    const channel = page.channels[order.channel];
    return h("article", { class: `card ${cls}`, "data-order": order.id, "data-status": order.status },
      h("div", { class: "head" },
        h("span", { class: "id" }, `#${order.id}`),
        open ? h("span", { class: "wait", title: `since ${fmt.dateTime(waitingSince(order))}` }, `waiting ${fmt.age(waited)}`)
          : ui.badge(fmt.status(order.status))),
      h("ul", {}, order.lines.map((l) => h("li", {}, `${l.product_name} × ${l.quantity}`,
        l.rx_class === "rx" ? [" ", ui.badge("Rx", "rx")] : null))),
      h("div", { class: "meta" },
        ui.badge(order.channel, channel && channel.online ? "online" : "offline"),
        ui.badge(order.fulfilment === "pickup" ? "pickup" : "delivery"),
        page.user.role === "admin" && !picker.value ? ui.badge(`store ${order.store_id}`) : null,
        h("span", { class: "total" }, fmt.money(order.total_fen))),
      order.hold_reasons.length ? h("div", { class: "reasons" }, order.hold_reasons.join("; ")) : null,
      order.fulfilment === "delivery" && order.delivery_address ? h("div", { class: "muted small" }, order.delivery_address) : null,
      buttons.length ? h("div", { class: "buttons" }, buttons) : null);
  }

  async function refresh() {
    try {
      const store_id = picker.value || undefined;
      const lists = await Promise.all(LANES.map((lane) =>
        api.get("/api/v1/orders", { status: lane.status, store_id, limit: 100 })));
      clear(lanesEl);
      LANES.forEach((lane, i) => {
        const items = lists[i].items.slice().sort((a, b) => new Date(waitingSince(a)) - new Date(waitingSince(b)));
        lanesEl.append(h("section", { class: "lane", "data-lane": lane.status, "aria-label": lane.title },
          h("h2", {}, h("span", {}, lane.title), h("span", { class: "count" }, String(items.length))),
          items.length ? items.map(card) : h("p", { class: "empty" }, "None")));
      });
      live.textContent = `live · updated ${fmt.time()}`;
      live.classList.remove("stale");
    } catch (err) {
      live.textContent = `not updating: ${err.message}`;
      live.classList.add("stale");
    }
  }

  async function find(e) {
    e.preventDefault();
    clear(found);
    const id = lookup.value.trim().replace(/^#/, "");
    if (!/^\d+$/.test(id)) { found.append(ui.error(new Error("Enter an order number."))); return; }
    try {
      const order = await api.get(`/api/v1/orders/${id}`);
      found.append(h("div", { class: "panel" }, h("h3", {}, `Order #${order.id} · ${fmt.status(order.status)}`),
        h("p", { class: "muted" }, `placed ${fmt.dateTime(order.created_at)}`), card(order)));
    } catch (err) {
      found.append(ui.error(err));
    }
  }

  page.channels = Object.create(null);
  for (const c of (await api.get("/api/v1/channels")).items) page.channels[c.name] = c;
  picker = await storePicker(page, { allowAll: user.role === "admin", onChange: refresh });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Order queue"), h("div", { class: "right" }, live)),
    h("div", { class: "toolbar" }, picker.element, h("span", { class: "grow" }),
      h("form", { class: "toolbar", onsubmit: find }, h("label", {}, "Find an order", lookup),
        h("button", { type: "submit" }, "Find"))),
    found, lanesEl);
  await refresh();
  page.every(POLL_MS, refresh);
}
