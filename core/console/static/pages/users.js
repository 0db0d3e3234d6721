// Chain admin · users and roles: staff accounts, their role and store, and a pharmacist's licence.
import { api, clear, fmt, forms, h, ui } from "/console/static/lib.js";

const ROLES = [["admin", "Chain admin"], ["store_manager", "Store manager"], ["pharmacist", "Pharmacist"], ["clerk", "Clerk"]];
const ROLE_LABEL = Object.fromEntries(ROLES);

function licenceBadge(user) {
  if (user.role !== "pharmacist") return "";
  if (!user.licence_number || !user.licence_expiry) return ui.badge("no licence recorded", "bad");
  const days = fmt.daysUntil(user.licence_expiry);
  if (days < 0) return ui.badge(`expired ${user.licence_expiry}`, "bad");
  if (days <= 60) return ui.badge(`expires ${user.licence_expiry}`, "warn");
  return ui.badge(`valid to ${user.licence_expiry}`, "good");
}

export async function render(page) {
  const { root } = page;
  const stores = await page.stores();
  const storeName = Object.fromEntries(stores.map((s) => [s.id, s.name]));
  const storeOptions = [["", "No store (chain-wide)"], ...stores.map((s) => [s.id, `${s.name} (${s.code})`])];
  const roleFilter = forms.select("role", [["", "All roles"], ...ROLES], { "aria-label": "Role" });
  const storeFilter = forms.select("store_id", [["", "All stores"], ...stores.map((s) => [s.id, s.name])], { "aria-label": "Store" });
  const host = h("div");

  function fields(user) {
    const u = user || { role: "clerk", active: true };
    const role = forms.select("role", ROLES, { value: u.role });
    const licence = [
      forms.field("Licence number 执业药师注册证", forms.input("licence_number", { value: u.licence_number || "", maxlength: 64 }),
        { name: "licence_number" }),
      forms.field("Licence expiry", forms.input("licence_expiry", { type: "date", value: u.licence_expiry || "" }),
        { name: "licence_expiry", hint: "a pharmacist approves prescriptions only while the licence is current" }),
    ];
    const toggle = () => licence.forEach((f) => f.classList.toggle("hidden", role.value !== "pharmacist"));
    role.addEventListener("change", toggle);
    toggle();
    return [
      forms.field("Username", forms.input("username", { value: u.username || "", disabled: Boolean(user), autocomplete: "off" }),
        { name: "username", required: !user }),
      forms.field("Display name", forms.input("display_name", { value: u.display_name || "", maxlength: 100 }), { name: "display_name" }),
      forms.field("Role", role, { name: "role", required: true }),
      forms.field("Store", forms.select("store_id", storeOptions, { value: u.store_id ?? "" }), { name: "store_id" }),
      ...licence,
      forms.field(user ? "New password (leave empty to keep)" : "Password",
        forms.input("password", { type: "password", autocomplete: "new-password" }),
        { name: "password", required: !user, hint: "at least 8 characters" }),
      forms.field("Active (may sign in)", h("input", { type: "checkbox", name: "active", checked: u.active }), { name: "active", check: true }),
    ];
  }

  function body(v, user) {
    const out = { display_name: v.display_name.trim(), role: v.role, store_id: v.store_id ? Number(v.store_id) : null,
      active: v.active };
    if (v.role === "pharmacist") {
      out.licence_number = v.licence_number.trim() || null;
      out.licence_expiry = v.licence_expiry || null;
    }
    if (!user) { out.username = v.username.trim(); out.password = v.password; }
    else if (v.password) out.password = v.password;
    return out;
  }

  async function load() {
    const users = await api.all("/api/v1/users", { role: roleFilter.value, store_id: storeFilter.value });
    clear(host).append(ui.table([
      { label: "Username", cell: (u) => u.username },
      { label: "Name", cell: (u) => u.display_name },
      { label: "Role", cell: (u) => ROLE_LABEL[u.role] || u.role },
      { label: "Store", cell: (u) => (u.store_id ? storeName[u.store_id] || `#${u.store_id}` : h("span", { class: "muted" }, "chain-wide")) },
      { label: "Licence", cell: (u) => (u.role === "pharmacist" ? [u.licence_number || "", " ", licenceBadge(u)] : "") },
      { label: "Status", cell: (u) => (u.active ? ui.badge("active", "good") : ui.badge("inactive")) },
    ], users, { onRow: edit, empty: "No users match." }));
  }

  async function create() {
    const done = await ui.formDialog({ title: "New staff user", fields: fields(null), submitLabel: "Create user",
      submit: (v) => api.post("/api/v1/users", body(v, null)) });
    if (done) { ui.toast(`Created ${done.username}`); await load(); }
  }

  async function edit(user) {
    const done = await ui.formDialog({ title: `Edit ${user.username}`, fields: fields(user), submitLabel: "Save",
      intro: "A new password or deactivation signs the user out everywhere.",
      submit: (v) => api.patch(`/api/v1/users/${user.id}`, body(v, user)) });
    if (done) { ui.toast(`Saved ${done.username}`); await load(); }
  }

  roleFilter.addEventListener("change", load);
  storeFilter.addEventListener("change", load);
  root.append(h("div", { class: "page-head" }, h("h1", {}, "Users & roles"),
    h("div", { class: "right" }, h("button", { type: "button", class: "primary", onclick: create }, "New user"))),
  h("div", { class: "toolbar" }, h("label", {}, "Role", roleFilter), h("label", {}, "Store", storeFilter)), host);
  await load();
}
