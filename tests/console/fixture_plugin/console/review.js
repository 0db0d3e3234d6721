// The fixture plugin's page: the orders held for prescription review, through the same API and helpers.
import { api, fmt, h, ui } from "/console/static/lib.js";

export async function render(page) {
  const list = await api.get("/api/v1/orders", { status: "awaiting_review", limit: 50 });
  page.root.append(h("h1", {}, "Rx review queue"),
    h("p", { class: "muted", "data-plugin-page": "console_fixture" }, "Added by the console_fixture plugin."),
    ui.table([
      { label: "Order", cell: (o) => `#${o.id}` },
      { label: "Waiting", cell: (o) => fmt.age(fmt.since(o.created_at)) },
      { label: "Lines", cell: (o) => o.lines.map((l) => `${l.product_name} × ${l.quantity}`).join(", ") },
    ], list.items, { empty: "No order awaits review." }));
}
