// The H5 shop inside WeChat: sign-in, store, catalogue, cart, checkout, WeChat Pay, orders, prescription
// upload and points. Plain ES module, same-origin API calls only; the customer token lives in sessionStorage
// and is never put in a URL.
const TOKEN_KEY = "p2o.h5.token";
const STORE_KEY = "p2o.h5.store";
const CART_KEY = "p2o.h5.cart";
const SIGNING_KEY = "p2o.h5.signing";
const STATUS = {
  awaiting_review: "待审方", awaiting_payment: "待支付", paid: "已支付，备货中", ready: "待取货",
  dispatched: "已发货", completed: "已完成", cancelled: "已取消", refunded: "已退款",
};
const RX_LABEL = { rx: "处方药", otc_a: "甲类OTC", otc_b: "乙类OTC" };
const RELATIONSHIPS = [["self", "本人"], ["spouse", "配偶"], ["parent", "父母"], ["child", "子女"],
  ["relative", "其他亲属"], ["guardian", "监护人"], ["other", "其他"]];

const state = { shop: null, stores: [], storeId: null, cart: loadCart() };
const view = document.getElementById("view");

// ---------------------------------------------------------------- helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const yuan = (fen) => `¥${Math.floor(fen / 100)}.${String(fen % 100).padStart(2, "0")}`;

function banner(text, ok = false) {
  const el = document.getElementById("banner");
  el.hidden = !text;
  el.textContent = text || "";
  el.className = ok ? "banner ok" : "banner";
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(method, path, { body, form, key } = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (key) headers["Idempotency-Key"] = key;
  const response = await fetch(path, {
    method, headers, body: form || (body !== undefined ? JSON.stringify(body) : undefined),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    await signIn();
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// ------------------------------------------------------------------ sign-in

async function signIn() {
  // the sign-in left a one-time code in an HttpOnly cookie: exchange it for the token
  const response = await fetch("/wechat/oauth/exchange", { method: "POST" });
  if (response.ok) {
    const data = await response.json();
    sessionStorage.setItem(TOKEN_KEY, data.token);
    sessionStorage.removeItem(SIGNING_KEY);
    return true;
  }
  const last = Number(sessionStorage.getItem(SIGNING_KEY) || 0);
  if (Date.now() - last < 30000) {  // we just came back from WeChat without a code: do not loop
    view.replaceChildren(h("div", { class: "card" }, h("h2", {}, "登录失败"),
      h("p", { class: "muted" }, "请在微信中打开本页面后重试。"),
      h("button", { class: "btn", type: "button", onclick: () => { sessionStorage.removeItem(SIGNING_KEY); location.reload(); } }, "重试")));
    return false;
  }
  sessionStorage.setItem(SIGNING_KEY, String(Date.now()));
  location.href = "/wechat/oauth/start?next=" + encodeURIComponent(location.pathname + location.hash);
  return false;
}

// --------------------------------------------------------------------- cart

function loadCart() {
  try { return JSON.parse(sessionStorage.getItem(CART_KEY)) || { lines: [] }; } catch { return { lines: [] }; }
}

function saveCart() {
  sessionStorage.setItem(CART_KEY, JSON.stringify(state.cart));
  const count = state.cart.lines.reduce((n, line) => n + line.quantity, 0);
  const badge = document.getElementById("cart-count");
  badge.hidden = count === 0;
  badge.textContent = String(count);
}

function addToCart(product) {
  const line = state.cart.lines.find((l) => l.product_id === product.id);
  if (line) line.quantity += 1;
  else state.cart.lines.push({ product_id: product.id, name: productName(product), price_fen: product.price_fen,
    rx: product.rx_class === "rx", quantity: 1 });
  state.cart.key = null;  // a changed cart is a new order
  saveCart();
  banner(`已加入购物车：${productName(product)}`, true);
}

// -------------------------------------------------------------------- stores

function currentStore() {
  return state.stores.find((s) => s.id === state.storeId) || null;
}

function showStore() {
  const button = document.getElementById("store-button");
  const store = currentStore();
  button.hidden = false;
  button.textContent = store ? `门店：${store.name}` : "选择门店";
}

function chooseStore(id) {
  if (state.storeId !== id) {
    state.cart = { lines: [] };
    saveCart();
  }
  state.storeId = id;
  sessionStorage.setItem(STORE_KEY, String(id));
  showStore();
}

function renderStores() {
  view.replaceChildren(h("h2", {}, "选择门店"), h("p", { class: "muted" }, "取货、配送和库存以所选门店为准。"),
    h("div", { class: "stores" }, state.stores.map((s) => h("button", {
      type: "button", "aria-pressed": String(s.id === state.storeId), dataset: { store: s.id },
      onclick: () => { chooseStore(s.id); location.hash = "#/"; },
    }, h("h3", {}, s.name), h("div", { class: "muted" }, [s.address, s.phone].filter(Boolean).join(" "))))));
  view.dataset.ready = "stores";
}

// ------------------------------------------------------------------ products

function productName(p) {
  return [p.generic_name, p.specification].filter(Boolean).join(" ");
}

function buyButton(p) {
  if (p.purchasable) {
    return h("button", { class: "btn", type: "button", dataset: { add: p.id }, onclick: () => addToCart(p) }, "加入购物车");
  }
  if (p.rx_class === "rx" && state.shop.features.prescription_upload && p.purchase_flow === "prescription_review") {
    return h("button", { class: "btn warn", type: "button", dataset: { rx: p.id }, onclick: () => addToCart(p) },
      "上传处方购买");
  }
  return h("button", { class: "btn", type: "button", disabled: true }, p.rx_class === "rx" ? "仅限到店购买" : "暂不可售");
}

function productCard(p) {
  return h("div", { class: "card product", dataset: { product: p.id } },
    h("div", { class: "row" },
      h("div", { class: "grow" },
        h("h3", {}, h("span", { class: `badge ${p.rx_class}` }, RX_LABEL[p.rx_class] || p.rx_class),
          h("a", { href: `#/products/${p.id}` }, productName(p))),
        h("div", { class: "muted" }, [p.brand_name, p.manufacturer].filter(Boolean).join(" · "))),
      h("span", { class: "price" }, yuan(p.price_fen))),
    p.rx_notice ? h("div", { class: "notice" }, p.rx_notice) : null,
    h("div", { class: "row end" }, buyButton(p)));
}

async function renderShop(query = "") {
  const input = h("input", { type: "search", name: "q", placeholder: "搜索药品名称、品牌", value: query });
  const form = h("form", { class: "search", onsubmit: (e) => {
    e.preventDefault();
    // not ready until the new list is shown (hashchange comes later, as a task of its own)
    view.dataset.ready = "";
    const next = `#/?q=${encodeURIComponent(input.value.trim())}`;
    if (location.hash === next) route(); else location.hash = next;
  } }, input, h("button", { class: "btn", type: "submit" }, "搜索"));
  const list = h("div", { id: "products" }, h("p", { class: "muted" }, "加载中…"));
  view.replaceChildren(form, list);
  const params = new URLSearchParams({ channel: state.shop.channel, limit: "30" });
  if (query) params.set("q", query);
  const page = await api("GET", `/api/v1/products?${params}`);
  list.replaceChildren(...(page.items.length ? page.items.map(productCard)
    : [h("p", { class: "muted" }, query ? `没有找到“${query}”` : "暂无商品")]));
  view.dataset.ready = "shop";
}

async function renderProduct(id) {
  const p = await api("GET", `/api/v1/products/${id}?channel=${state.shop.channel}`);
  view.replaceChildren(productCard(p), h("div", { class: "card" }, h("h3", {}, "说明书"),
    p.package_insert ? h("div", { class: "insert" }, p.package_insert)
      : h("p", { class: "muted" }, p.rx_class === "rx" ? "处方药说明书在药师审核通过您的处方后可见。" : "暂无")),
  h("div", { class: "card muted" }, `批准文号：${p.approval_number}`, h("br"), `生产企业：${p.manufacturer || "—"}`));
  view.dataset.ready = "product";
}

// ---------------------------------------------------------------------- cart

function renderCart() {
  const lines = state.cart.lines;
  if (!lines.length) {
    view.replaceChildren(h("h2", {}, "购物车"), h("p", { class: "muted" }, "购物车是空的。"),
      h("a", { class: "btn", href: "#/" }, "去逛逛"));
    view.dataset.ready = "cart";
    return;
  }
  const total = lines.reduce((sum, l) => sum + l.price_fen * l.quantity, 0);
  const rx = lines.some((l) => l.rx);
  const address = h("textarea", { name: "delivery_address", rows: "2", placeholder: "省市区、街道、门牌号、收件人和电话" });
  const addressField = h("label", { class: "field", hidden: true }, h("span", {}, "配送地址"), address);
  const choice = (value, text, checked) => h("label", {}, h("input", {
    type: "radio", name: "fulfilment", value, checked,
    onchange: () => { addressField.hidden = value !== "delivery"; },
  }), text);
  const error = h("p", { class: "field-error", role: "alert" });
  const submit = h("button", { class: "btn block", type: "submit" }, rx ? "提交订单并上传处方" : `提交订单 ${yuan(total)}`);
  const form = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    submit.disabled = true;
    error.textContent = "";
    const fulfilment = form.querySelector("input[name=fulfilment]:checked").value;
    state.cart.key = state.cart.key || newKey();  // a retried submit makes one order
    saveCart();
    try {
      const order = await api("POST", "/api/v1/orders", { key: state.cart.key, body: {
        store_id: state.storeId, channel: state.shop.channel, fulfilment,
        delivery_address: fulfilment === "delivery" ? address.value.trim() : null,
        lines: lines.map((l) => ({ product_id: l.product_id, quantity: l.quantity })),
      } });
      state.cart = { lines: [] };
      saveCart();
      location.hash = `#/orders/${order.id}`;
    } catch (err) {
      error.textContent = problemText(err);
      submit.disabled = false;
    }
  } },
  h("div", { class: "card" }, h("h3", {}, "取货方式"),
    h("div", { class: "choice" }, choice("pickup", "到店自提", true), choice("delivery", "送货上门", false)),
    addressField,
    h("p", { class: "muted" }, `门店：${currentStore() ? currentStore().name : "未选择"}`)),
  rx ? h("div", { class: "notice" }, "订单含处方药：提交后请上传处方，执业药师审核通过后方可支付。") : null,
  error, submit);
  view.replaceChildren(h("h2", {}, "购物车"), h("div", { class: "card" }, h("ul", { class: "list" }, lines.map((l) =>
    h("li", { class: "row", dataset: { line: l.product_id } },
      h("div", { class: "grow" }, l.rx ? h("span", { class: "badge rx" }, "处方药") : null, l.name,
        h("div", { class: "price" }, yuan(l.price_fen))),
      h("div", { class: "qty" },
        h("button", { type: "button", "aria-label": "减少", onclick: () => changeQty(l, -1) }, "−"),
        h("span", {}, String(l.quantity)),
        h("button", { type: "button", "aria-label": "增加", onclick: () => changeQty(l, 1) }, "+")))))),
  h("p", { class: "row" }, h("span", {}, "合计"), h("span", { class: "price", id: "cart-total" }, yuan(total))), form);
  view.dataset.ready = "cart";
}

function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function changeQty(line, delta) {
  line.quantity += delta;
  state.cart.lines = state.cart.lines.filter((l) => l.quantity > 0);
  state.cart.key = null;
  saveCart();
  renderCart();
}

function problemText(err) {
  if (!(err instanceof ApiError)) return "网络异常，请重试。";
  const fields = (err.problem.errors || []).map((e) => `${e.field}: ${e.message}`);
  return fields.length ? fields.join("；") : err.message;
}

// -------------------------------------------------------------------- orders

function statusBadge(order) {
  return h("span", { class: `status ${order.status}`, dataset: { status: order.status } }, STATUS[order.status] || order.status);
}

async function renderOrders() {
  const page = await api("GET", "/api/v1/orders?limit=50");
  view.replaceChildren(h("h2", {}, "我的订单"), ...(page.items.length ? page.items.map((o) =>
    h("a", { class: "card row plain", href: `#/orders/${o.id}`,
      dataset: { order: o.id } },
    h("div", { class: "grow" }, h("h3", {}, `订单 ${o.id}`),
      h("div", { class: "muted" }, o.lines.map((l) => `${l.product_name}×${l.quantity}`).join("、")),
      h("div", { class: "muted" }, new Date(o.created_at).toLocaleString("zh-CN", { hour12: false }))),
    h("div", { class: "right" }, statusBadge(o), h("div", { class: "price" }, yuan(o.total_fen)))))
    : [h("p", { class: "muted" }, "还没有订单。")]));
  view.dataset.ready = "orders";
}

async function renderOrder(id, note = "") {
  const order = await api("GET", `/api/v1/orders/${id}`);
  const parts = [h("div", { class: "card" },
    h("div", { class: "row" }, h("h2", {}, `订单 ${order.id}`), statusBadge(order)),
    h("ul", { class: "list" }, order.lines.map((l) => h("li", { class: "row" },
      h("span", { class: "grow" }, l.rx_class === "rx" ? h("span", { class: "badge rx" }, "处方药") : null,
        `${l.product_name} × ${l.quantity}`), h("span", {}, yuan(l.line_total_fen))))),
    order.adjustments.map((a) => h("div", { class: "row muted" }, h("span", {}, a.label), h("span", {}, yuan(a.amount_fen)))),
    h("div", { class: "row" }, h("strong", {}, "合计"), h("span", { class: "price" }, yuan(order.total_fen))),
    h("div", { class: "muted" }, order.fulfilment === "pickup" ? "到店自提" : `配送至：${order.delivery_address || ""}`))];
  if (note) parts.unshift(h("div", { class: "banner ok", role: "status" }, note));
  if (order.status === "ready" && order.pickup_code) {
    parts.push(h("div", { class: "card" }, h("h3", {}, "取货码"), h("div", { class: "pickup", id: "pickup-code" }, order.pickup_code),
      h("p", { class: "muted" }, "请到店出示取货码。")));
  }
  if (order.status === "awaiting_payment") {
    const payError = h("p", { class: "field-error", role: "alert" });
    const pay = h("button", { class: "btn block", type: "button", id: "pay" }, `微信支付 ${yuan(order.total_fen)}`);
    pay.addEventListener("click", () => payOrder(order, pay, payError));
    parts.push(payError, pay);
  }
  if (order.status === "awaiting_review") parts.push(await prescriptionPart(order));
  if (order.status === "awaiting_payment" || order.status === "awaiting_review") {
    parts.push(h("p", {}, h("button", { class: "btn secondary block", type: "button", id: "cancel", onclick: async () => {
      try {
        await api("POST", `/api/v1/orders/${order.id}/cancel`, { body: { reason: "顾客取消" } });
        renderOrder(order.id, "订单已取消");
      } catch (err) { banner(problemText(err)); }
    } }, "取消订单")));
  }
  view.replaceChildren(...parts);
  view.dataset.ready = `order-${order.status}`;
}

// ---------------------------------------------------------------- WeChat Pay

function bridge(timeoutMs = 3000) {
  if (typeof window.WeixinJSBridge !== "undefined") return Promise.resolve(window.WeixinJSBridge);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no bridge")), timeoutMs);
    document.addEventListener("WeixinJSBridgeReady", () => { clearTimeout(timer); resolve(window.WeixinJSBridge); },
      { once: true });
  });
}

async function payOrder(order, button, error) {
  button.disabled = true;
  error.textContent = "";
  try {
    const pay = await api("POST", `/api/v1/orders/${order.id}/wechat-pay`);
    let jsBridge;
    try { jsBridge = await bridge(); } catch {
      error.textContent = "请在微信中打开本页面完成支付。";
      button.disabled = false;
      return;
    }
    const result = await new Promise((resolve) => jsBridge.invoke("getBrandWCPayRequest", pay.js_params, resolve));
    if (result.err_msg === "get_brand_wcpay_request:ok") {
      await waitPaid(order.id);
    } else if (result.err_msg === "get_brand_wcpay_request:cancel") {
      error.textContent = "已取消支付。";
      button.disabled = false;
    } else {
      error.textContent = "支付未完成，请重试。";
      button.disabled = false;
    }
  } catch (err) {
    error.textContent = problemText(err);
    button.disabled = false;
  }
}

async function waitPaid(id) {
  // WeChat's notification to the server confirms the payment: the page only waits for it
  for (let i = 0; i < 20; i++) {
    const order = await api("GET", `/api/v1/orders/${id}`);
    if (order.status !== "awaiting_payment") return renderOrder(id, "支付成功");
    await new Promise((r) => setTimeout(r, 500));
  }
  return renderOrder(id, "支付结果确认中，请稍后刷新。");
}

// ------------------------------------------------------------- prescription

async function prescriptionPart(order) {
  let existing = null;
  try {
    const page = await api("GET", "/api/v1/prescriptions?limit=50");
    existing = page.items.find((p) => p.order_id === order.id && p.status === "pending") || null;
  } catch { existing = null; }
  if (existing) {
    return h("div", { class: "card", id: "rx-pending" }, h("h3", {}, "处方已提交"),
      h("p", { class: "muted" }, "执业药师审核中，审核通过后即可支付，我们会通过微信通知您。"));
  }
  if (!state.shop.features.prescription_upload) {
    return h("div", { class: "card" }, h("p", { class: "muted" }, "订单等待审核。"));
  }
  const today = new Date();
  const iso = `${today.getFullYear()}-${String(today.getMonth() + 1).padStart(2, "0")}-${String(today.getDate()).padStart(2, "0")}`;
  const field = (name, label, input) => h("label", { class: "field" }, h("span", {}, label), input,
    h("span", { class: "field-error", dataset: { error: name } }));
  const text = (name, attrs = {}) => h("input", { name, type: "text", required: true, ...attrs });
  const error = h("p", { class: "field-error", role: "alert" });
  const submit = h("button", { class: "btn block", type: "submit" }, "提交处方");
  const rxLines = order.lines.filter((l) => l.rx_class === "rx");
  const form = h("form", { id: "rx-form", onsubmit: async (e) => {
    e.preventDefault();
    submit.disabled = true;
    error.textContent = "";
    form.querySelectorAll("[data-error]").forEach((el) => { el.textContent = ""; });
    const data = new FormData(form);
    data.set("items", JSON.stringify(rxLines.map((l) => ({ product_id: l.product_id, quantity: l.quantity }))));
    if (!data.get("extension_note")) data.delete("extension_note");
    try {
      await api("POST", `/api/v1/orders/${order.id}/prescription`, { form: data });
      renderOrder(order.id, "处方已提交，请等待药师审核");
    } catch (err) {
      for (const problem of (err.problem && err.problem.errors) || []) {
        const slot = form.querySelector(`[data-error="${problem.field}"]`);
        if (slot) slot.textContent = problem.message;
      }
      error.textContent = problemText(err);
      submit.disabled = false;
    }
  } },
  h("h3", {}, "上传处方"),
  h("p", { class: "muted" }, "请上传医生开具的处方照片（JPG、PNG 或 PDF），并填写处方信息。"),
  field("document", "处方照片", h("input", { name: "document", type: "file", accept: "image/jpeg,image/png,application/pdf", required: true })),
  field("patient_name", "患者姓名", text("patient_name")),
  field("patient_id_number", "患者身份证号", text("patient_id_number", { maxlength: "18", inputmode: "text" })),
  field("relationship", "您与患者的关系", h("select", { name: "relationship" }, RELATIONSHIPS.map(([v, l]) => h("option", { value: v }, l)))),
  field("prescriber", "开方医生", text("prescriber")),
  field("institution", "医疗机构", text("institution")),
  field("prescription_number", "处方编号", text("prescription_number")),
  field("issue_date", "开具日期", h("input", { name: "issue_date", type: "date", value: iso, required: true })),
  field("extension_note", "延长有效期说明（如有）", h("input", { name: "extension_note", type: "text" })),
  field("items", "处方药品", h("div", { class: "muted" }, rxLines.map((l) => `${l.product_name} × ${l.quantity}`).join("、"))),
  error, submit);
  return h("div", { class: "card" }, form);
}

// ------------------------------------------------------------------------ me

async function renderMe() {
  const parts = [h("h2", {}, "我的")];
  if (state.shop.features.loyalty) {
    let member = null;
    try { member = await api("GET", `/api/v1/members/${state.shop.customer_id}`); } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404) throw err;
    }
    parts.push(h("div", { class: "card", id: "points" }, h("h3", {}, "会员积分"),
      h("div", { class: "points", id: "points-available" }, String(member ? member.available : 0)),
      member ? h("p", { class: "muted" }, `待生效 ${member.pending} · 已冻结 ${member.held} · 等级 ${member.tier}`)
        : h("p", { class: "muted" }, "首次下单支付后自动成为会员。")));
  }
  parts.push(h("div", { class: "card" }, h("div", { class: "row" }, h("span", {}, "门店"),
    h("a", { href: "#/stores" }, currentStore() ? currentStore().name : "选择门店"))));
  view.replaceChildren(...parts);
  view.dataset.ready = "me";
}

// -------------------------------------------------------------------- router

async function route() {
  view.dataset.ready = "";
  banner("");
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const tab = path.startsWith("/cart") ? "cart" : path.startsWith("/orders") ? "orders"
    : path.startsWith("/me") || path.startsWith("/stores") ? "me" : "shop";
  document.querySelectorAll(".tabs a").forEach((a) => {
    if (a.dataset.tab === tab) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  try {
    let m;
    if (!state.storeId || path === "/stores") renderStores();
    else if ((m = path.match(/^\/products\/(\d+)$/))) await renderProduct(Number(m[1]));
    else if (path === "/cart") renderCart();
    else if ((m = path.match(/^\/orders\/(\d+)$/))) await renderOrder(Number(m[1]));
    else if (path === "/orders") await renderOrders();
    else if (path === "/me") await renderMe();
    else await renderShop(new URLSearchParams(query || "").get("q") || "");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      view.replaceChildren(h("div", { class: "card" }, h("p", { class: "field-error" }, problemText(err))));
      view.dataset.ready = "error";
    }
  }
}

async function boot() {
  if (location.hash === "#wechat_redirect") {  // carried over from WeChat's authorize address: not ours
    history.replaceState(null, "", location.pathname + location.search);
  }
  if (!sessionStorage.getItem(TOKEN_KEY) && !(await signIn())) return;
  try {
    state.shop = await api("GET", "/api/v1/wechat/shop");
    state.stores = (await api("GET", "/api/v1/stores?limit=200&active=true")).items;
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) banner(problemText(err));
    return;
  }
  const saved = Number(sessionStorage.getItem(STORE_KEY) || 0);
  const known = (id) => state.stores.some((s) => s.id === id);
  state.storeId = known(saved) ? saved : known(state.shop.store_id) ? state.shop.store_id : null;
  document.getElementById("store-button").addEventListener("click", () => { location.hash = "#/stores"; });
  showStore();
  saveCart();
  window.addEventListener("hashchange", route);
  await route();
}

boot();
