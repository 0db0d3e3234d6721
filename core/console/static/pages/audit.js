// Chain admin · audit log: who did what and when, filtered by actor, action, entity and time.
import { api, clear, fmt, forms, h, ui } from "/console/static/lib.js";

function localToIso(value) {
  if (!value) return undefined;
  const d = new Date(value); // a datetime-local value is local time
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

function json(value) {
  return value === null || value === undefined ? "" : h("pre", { class: "json" }, JSON.stringify(value, null, 1));
}

export async function render(page) {
  const { root } = page;
  const filters = h("form", { class: "toolbar", novalidate: true },
    h("div", { class: "form-error", role: "alert" }),
    forms.field("Actor", forms.input("actor", { placeholder: "user:admin" })),
    forms.field("Action", forms.input("action", { placeholder: "stock.adjust" })),
    forms.field("Entity", forms.input("entity", { placeholder: "product" })),
    forms.field("Entity id", forms.input("entity_id", { size: 8 })),
    forms.field("From", forms.input("since", { type: "datetime-local" })),
    forms.field("Until", forms.input("until", { type: "datetime-local" })),
    h("button", { type: "submit", class: "primary" }, "Filter"),
    h("button", { type: "reset" }, "Clear"));
  const host = h("div");
  const more = h("div", { class: "more" });
  let items = [];
  let cursor = null;
  let query = {};

  async function load(reset = true) {
    if (reset) {
      const v = forms.values(filters);
      query = { actor: v.actor.trim(), action: v.action.trim(), entity: v.entity.trim(), entity_id: v.entity_id.trim(),
        since: localToIso(v.since), until: localToIso(v.until) };
      items = [];
      cursor = null;
    }
    try {
      const pg = await api.get("/api/v1/audit", { ...query, limit: 50, cursor });
      forms.clearErrors(filters);
      items = items.concat(pg.items);
      cursor = pg.next_cursor;
    } catch (err) {
      forms.showErrors(filters, err);
      return;
    }
    clear(host).append(ui.table([
      { label: "When", cell: (e) => fmt.dateTime(e.at), class: "nowrap" },
      { label: "Actor", cell: (e) => e.actor },
      { label: "Action", cell: (e) => h("code", {}, e.action) },
      { label: "Entity", cell: (e) => `${e.entity}${e.entity_id ? ` #${e.entity_id}` : ""}` },
      { label: "Detail", cell: (e) => e.detail },
      { label: "Before", cell: (e) => json(e.before) },
      { label: "After", cell: (e) => json(e.after) },
    ], items, { empty: "No entries match." }));
    clear(more);
    if (cursor) more.append(h("button", { type: "button", onclick: () => load(false) }, "Load more"));
  }

  filters.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  filters.addEventListener("reset", () => setTimeout(load, 0));
  root.append(h("h1", {}, "Audit log"), h("p", { class: "muted" }, "Append-only; newest first."), filters, host, more);
  await load();
}
