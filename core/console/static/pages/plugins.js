// Chain admin · plugins: version, licence state and the hooks each implements; enable or disable
// (after a confirmation), which changes the configuration and takes effect when the server restarts.
import { api, clear, h, ui } from "/console/static/lib.js";

export async function render(page) {
  const { root } = page;
  const banner = h("div");
  const licence = h("div");
  const host = h("div");

  async function change(plugin, action) {
    const enable = action === "enable";
    const ok = await ui.confirm({
      title: `${enable ? "Enable" : "Disable"} ${plugin.name}?`,
      message: enable
        ? [`${plugin.name} ${plugin.version}: ${plugin.summary}`,
          plugin.depends.length ? `The plugins it depends on are enabled too: ${plugin.depends.join(", ")}.` : "",
          "Its database tables are created now; its API routes and pages appear after the server restarts."].filter(Boolean)
        : [`${plugin.name} stops after the server restarts. Its tables and data are kept (purging them is a separate ` +
          "command-line step).", "Plugins that depend on it must be disabled first."],
      confirmLabel: enable ? "Enable" : "Disable", danger: !enable });
    if (!ok) return;
    try {
      const result = await api.post(`/api/v1/plugins/${action}`, { names: [plugin.name] });
      ui.toast(result.message);
    } catch (err) {
      ui.toast(err.message, "error");
      clear(banner).append(ui.error(err));
      return;
    }
    await load();
  }

  async function load() {
    const [plugins, conf] = await Promise.all([api.get("/api/v1/plugins"), api.get("/api/v1/plugins/configuration")]);
    const configured = new Set(conf.configured);
    clear(banner);
    if (conf.restart_required) {
      banner.append(h("div", { class: "banner warn", "data-restart": "" },
        `The configuration enables ${conf.configured.join(", ") || "no plugins"}; this server runs with ` +
        `${conf.running.join(", ") || "none"}. Restart the server (every worker) to apply the change.`));
    }
    if (!conf.configurable) {
      banner.append(h("div", { class: "banner info" }, "PHARMO2O_PLUGINS fixes the enabled plugins: change it in the environment."));
    }
    clear(licence).append(h("p", { class: "muted" },
      conf.license_state === "none" ? "No license is configured: every installed plugin may be enabled."
        : `License ${conf.license_state}; licensed modules: ${(conf.licensed_modules || []).join(", ") || "none"}.`));
    clear(host).append(ui.table([
      { label: "Plugin", cell: (p) => [h("strong", {}, p.name), h("div", { class: "muted" }, p.summary)] },
      { label: "Version", cell: (p) => p.version },
      { label: "Depends on", cell: (p) => p.depends.join(", ") || "–" },
      { label: "Licence", cell: (p) => (p.licensed ? ui.badge("licensed", "good") : ui.badge("not licensed", "bad")) },
      { label: "State", cell: (p) => {
        const on = configured.has(p.name);
        const note = on !== p.enabled ? ui.badge(on ? "enabled on restart" : "disabled on restart", "warn") : null;
        return [p.enabled ? ui.badge("running", "good") : ui.badge("off"), " ", note];
      } },
      { label: "Hooks", cell: (p) => (p.hooks.length ? h("div", { class: "chips" }, p.hooks.map((x) => h("span", { class: "chip" }, x)))
        : h("span", { class: "muted small" }, "listed while it runs")) },
      { label: "", cell: (p) => {
        const on = configured.has(p.name);
        return h("button", { type: "button", class: `small ${on ? "" : "primary"}`, "data-action": on ? "disable" : "enable",
          disabled: !conf.configurable || (!on && !p.licensed), title: !on && !p.licensed ? "not in the license" : "",
          onclick: () => change(p, on ? "disable" : "enable") }, on ? "Disable" : "Enable");
      } },
    ], plugins.items.filter((p) => p.name !== "core"), { empty: "No plugin is installed." }));
  }

  root.append(h("h1", {}, "Plugins"), banner, licence, host);
  await load();
}
