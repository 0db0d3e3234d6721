// Chain admin · stores: list, open and edit them (the API's field errors next to the fields).
import { api, clear, fmt, forms, h, ui } from "/console/static/lib.js";

function fields(store) {
  const s = store || { active: true };
  return [
    forms.field("Code", forms.input("code", { value: s.code || "", maxlength: 32, disabled: Boolean(store) }),
      { name: "code", required: !store, hint: store ? "the code cannot change" : "short and unique, e.g. SH-03" }),
    forms.field("Name", forms.input("name", { value: s.name || "", maxlength: 200 }), { name: "name", required: true }),
    forms.field("Address", forms.input("address", { value: s.address || "", maxlength: 500 }), { name: "address", wide: true }),
    forms.field("Phone", forms.input("phone", { value: s.phone || "", maxlength: 40 }), { name: "phone" }),
    forms.field("Open (active)", h("input", { type: "checkbox", name: "active", checked: s.active }), { name: "active", check: true }),
  ];
}

export async function render(page) {
  const { root } = page;
  const host = h("div");

  async function load() {
    const stores = await api.all("/api/v1/stores");
    clear(host).append(ui.table([
      { label: "Code", cell: (s) => s.code, class: "nowrap" },
      { label: "Name", cell: (s) => s.name },
      { label: "Address", cell: (s) => s.address },
      { label: "Phone", cell: (s) => s.phone, class: "nowrap" },
      { label: "Status", cell: (s) => (s.active ? ui.badge("open", "good") : ui.badge("closed")) },
      { label: "Since", cell: (s) => fmt.dateTime(s.created_at), class: "nowrap" },
    ], stores, { onRow: edit, empty: "No stores yet." }));
  }

  async function create() {
    const done = await ui.formDialog({
      title: "New store", fields: fields(null), submitLabel: "Create store",
      submit: (v) => api.post("/api/v1/stores", { code: v.code.trim(), name: v.name.trim(),
        address: v.address.trim() || null, phone: v.phone.trim() || null, active: v.active }),
    });
    if (done) { ui.toast(`Created store ${done.name}`); await load(); }
  }

  async function edit(store) {
    const done = await ui.formDialog({
      title: `Edit ${store.name}`, fields: fields(store), submitLabel: "Save",
      submit: (v) => api.patch(`/api/v1/stores/${store.id}`, { name: v.name.trim(), address: v.address.trim(),
        phone: v.phone.trim(), active: v.active }),
    });
    if (done) { ui.toast(`Saved ${done.name}`); await load(); }
  }

  root.append(h("div", { class: "page-head" }, h("h1", {}, "Stores"),
    h("div", { class: "right" }, h("button", { type: "button", class: "primary", onclick: create }, "New store"))), host);
  await load();
}
