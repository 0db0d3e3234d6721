// meituan_delivery's console page: Meituan orders and where their delivery is, through the plugin's API.
import { api, fmt, h, ui } from "/console/static/lib.js";

const DELIVERY = { accepted: "accepted", rider_assigned: "rider assigned", picked_up: "picked up",
  delivered: "delivered", cancelled: "cancelled" };

export async function render(page) {
  const list = await api.get("/api/v1/meituan/orders", { limit: 50 });
  page.root.append(h("h1", {}, "Meituan deliveries"),
    h("p", { class: "muted", "data-plugin-page": "meituan_delivery" }, "Orders received from 美团外卖."),
    ui.table([
      { label: "Meituan order", cell: (o) => o.meituan_order_id },
      { label: "Order", cell: (o) => `#${o.order_id}` },
      { label: "Status", cell: (o) => fmt.status(o.order_status) },
      { label: "Delivery", cell: (o) => DELIVERY[o.delivery_status] || o.delivery_status },
      { label: "Rider", cell: (o) => (o.rider_name ? `${o.rider_name} ${o.rider_phone || ""}` : "–") },
      { label: "Paid on Meituan", cell: (o) => fmt.money(o.meituan_total_fen) },
      { label: "Received", cell: (o) => fmt.dateTime(o.created_at) },
    ], list.items, { empty: "No Meituan order yet." }));
}
