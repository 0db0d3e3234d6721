// Dashboard: today's and the last 30 days' sales per store and channel (online / in store), orders
// waiting for review and their age, and the value of near-expiry stock, drawn as SVG charts.
import { api, clear, fmt, h, storePicker, ui } from "/console/static/lib.js";
import { hbars, stackedColumns } from "/console/static/charts.js";

const DAYS = 30;
const NEAR_DAYS = 90;
const REFRESH_MS = 60000;
const SALES_SERIES = [{ name: "Online", className: "online", key: true }, { name: "In store / POS", className: "offline", key: false }];

function kpi(label, value, sub, { alert = false, id } = {}) {
  return h("div", { class: `kpi${alert ? " alert" : ""}`, "data-kpi": id },
    h("div", { class: "label" }, label), h("div", { class: "value" }, value), sub ? h("div", { class: "sub" }, sub) : null);
}

function panel(title, content, { span = false, id } = {}) {
  return h("section", { class: `panel${span ? " span" : ""}`, "data-chart": id }, h("h2", {}, title), content);
}

function addDays(iso, n) {
  const [y, m, d] = iso.split("-").map(Number);
  const t = new Date(Date.UTC(y, m - 1, d + n));
  return t.toISOString().slice(0, 10);
}

export async function render(page) {
  const { root } = page;
  const body = h("div");
  const updated = h("span", { class: "live" }, "");
  let picker;

  async function load() {
    const store_id = picker.value || undefined;
    const [sales, expiry, queue] = await Promise.all([
      api.get("/api/v1/reports/sales", { days: DAYS, store_id }),
      api.get("/api/v1/reports/near-expiry", { days: NEAR_DAYS, store_id }),
      api.get("/api/v1/reports/order-queue", { store_id }),
    ]);
    const wide = window.innerWidth > 900; // two chart columns: draw at about the size shown, so text keeps its size
    const full = wide ? 1000 : 700;
    const half = wide ? 480 : 640;
    const storeName = Object.fromEntries(sales.stores.map((s) => [s.id, s.name]));
    const isOnline = (r) => r.online === true;

    // KPIs
    const review = queue.statuses.find((s) => s.status === "awaiting_review");
    const toPrepare = queue.statuses.find((s) => s.status === "paid");
    const kpis = h("div", { class: "kpis" },
      kpi("Sales today", fmt.money(sales.today_totals.total_fen), `${sales.today_totals.orders} orders · online ${fmt.money(sales.today_totals.online_fen)}`, { id: "today" }),
      kpi(`Sales, last ${DAYS} days`, fmt.money(sales.period_totals.total_fen), `${sales.period_totals.orders} orders · online ${fmt.money(sales.period_totals.online_fen)}`, { id: "period" }),
      kpi("Awaiting review", String(review.count),
        review.count ? `oldest waiting ${fmt.age(review.oldest_age_seconds)}` : "none waiting",
        { alert: review.count > 0 && review.oldest_age_seconds > 3600, id: "review" }),
      kpi("Paid, to prepare", String(toPrepare.count),
        toPrepare.count ? `oldest waiting ${fmt.age(toPrepare.oldest_age_seconds)}` : "none waiting", { id: "prepare" }),
      kpi(`Expiring within ${NEAR_DAYS} days`, fmt.money(expiry.near_fen), "stock value at retail price", { id: "near" }),
      kpi("Expired on hand", fmt.money(expiry.expired_fen), "not sellable: quarantine or destroy",
        { alert: expiry.expired_fen > 0, id: "expired" }));

    // Sales per day, online vs in store
    const days = Array.from({ length: sales.days }, (_, i) => addDays(sales.start, i));
    const perDay = SALES_SERIES.map((x) => ({ ...x,
      values: days.map((d) => sales.rows.filter((r) => r.date === d && isOnline(r) === x.key).reduce((a, r) => a + r.total_fen, 0)) }));
    const daily = stackedColumns({ categories: days.map((d) => d.slice(5)), series: perDay, format: fmt.moneyShort,
      labelEvery: 5, title: `Sales per day, last ${DAYS} days`, width: full, height: 260 });

    // Per store: today and period
    const storeRows = (pred) => sales.stores.map((s) => ({ label: s.name, segments: SALES_SERIES.map((x) => ({
      name: x.name, className: x.className,
      value: sales.rows.filter((r) => r.store_id === s.id && pred(r) && isOnline(r) === x.key).reduce((a, r) => a + r.total_fen, 0) })) }));
    const today = hbars({ rows: storeRows((r) => r.date === sales.today), format: fmt.money, series: SALES_SERIES, width: half,
      title: "Sales today per store" });
    const period = hbars({ rows: storeRows(() => true), format: fmt.money, series: SALES_SERIES, width: half,
      title: `Sales per store, last ${DAYS} days` });

    // Per channel
    const channelRows = sales.channels.map((c) => ({ label: `${c.label || c.name}`, segments: [{ name: c.name,
      className: c.online === true ? "online" : c.online === false ? "offline" : "other",
      value: sales.rows.filter((r) => r.channel === c.name).reduce((a, r) => a + r.total_fen, 0) }] }));
    const channels = hbars({ rows: channelRows, format: fmt.money, series: SALES_SERIES, title: "Sales per channel", width: half });

    // Review queue ages
    const ages = hbars({ rows: queue.review_ages.map((b) => ({ label: b.label, segments: [{ name: "orders", className: "bar", value: b.count }] })),
      format: (v) => String(Math.round(v)), title: "Orders awaiting review by age", width: half });
    const oldest = queue.awaiting_review.length ? ui.table([
      { label: "Order", cell: (o) => `#${o.id}` },
      { label: "Store", cell: (o) => storeName[o.store_id] || `#${o.store_id}` },
      { label: "Waiting", cell: (o) => fmt.age(o.age_seconds), class: "nowrap" },
      { label: "Total", cell: (o) => fmt.money(o.total_fen), class: "num" },
      { label: "Why held", cell: (o) => o.hold_reasons.join("; ") },
    ], queue.awaiting_review.slice(0, 8)) : h("p", { class: "muted" }, "No order is waiting for review.");

    // Near-expiry value per store
    const expiryRows = expiry.stores.map((s) => {
      const row = expiry.by_store.find((b) => b.store_id === s.id) || { expired_fen: 0, near_fen: 0 };
      return { label: s.name, segments: [{ name: "expired", className: "expired", value: row.expired_fen },
        { name: `within ${NEAR_DAYS} days`, className: "near", value: row.near_fen }] };
    });
    const expiryChart = hbars({ rows: expiryRows, format: fmt.money, title: "Near-expiry stock value per store", width: full,
      series: [{ name: "expired", className: "expired" }, { name: `expires within ${NEAR_DAYS} days`, className: "near" }] });

    clear(body).append(kpis, h("div", { class: "charts" },
      panel(`Sales per day · last ${DAYS} days (${sales.timezone})`, daily, { span: true, id: "daily" }),
      panel("Sales today per store", today, { id: "stores-today" }),
      panel(`Sales per store · ${DAYS} days`, period, { id: "stores-period" }),
      panel(`Sales per channel · ${DAYS} days`, channels, { id: "channels" }),
      panel("Orders awaiting review", h("div", {}, ages, oldest), { id: "review" }),
      panel("Near-expiry stock value", expiryChart, { span: true, id: "expiry" })));
    updated.textContent = `updated ${fmt.time()}`;
  }

  picker = await storePicker(page, { allowAll: true, onChange: () => load().catch((e) => ui.toast(e.message, "error")) });
  root.append(h("div", { class: "page-head" }, h("h1", {}, "Dashboard"), h("div", { class: "right" }, updated)),
    h("div", { class: "toolbar" }, picker.element), body);
  await load();
  page.every(REFRESH_MS, () => load().catch(() => { updated.textContent = "not updating"; updated.classList.add("stale"); }));
}
