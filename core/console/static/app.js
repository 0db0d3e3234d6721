// pharmo2o console shell: sign-in, the navigation (only the pages the user's role may open, from
// GET /api/v1/console/pages), and the router that loads each page's module and calls its render(page).
import { api, ApiError, clear, forms, h, session, ui } from "/console/static/lib.js";

const root = document.getElementById("app");
let state = null; // {user, pages, storesPromise}
let cleanups = [];

function runCleanups() {
  for (const fn of cleanups.splice(0)) {
    try { fn(); } catch { /* a page's cleanup failing must not block navigation */ }
  }
}

// ----------------------------------------------------------------- sign-in

function showLogin(message) {
  runCleanups();
  state = null;
  document.title = "Sign in · pharmo2o console";
  const form = h("form", { class: "panel", novalidate: true },
    h("div", { class: "form-error", role: "alert" }, message || ""),
    forms.field("Username", forms.input("username", { autocomplete: "username", required: true }), { required: true }),
    forms.field("Password", forms.input("password", { type: "password", autocomplete: "current-password", required: true }),
      { required: true }),
    h("button", { type: "submit", class: "primary" }, "Sign in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const { username, password } = forms.values(form);
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const issued = await api.request("POST", "/api/v1/auth/token", { json: { username, password }, auth: false });
      session.set(issued.token);
      await start();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        forms.showErrors(form, new ApiError(401, { detail: "Wrong username or password, or the account is inactive." }));
      } else {
        forms.showErrors(form, err);
      }
    } finally {
      button.disabled = false;
    }
  });
  clear(root).append(h("div", { class: "login" },
    h("h1", {}, "pharmo2o console"),
    h("p", { class: "muted center" }, "Staff sign-in"),
    form));
  form.querySelector("input").focus();
}

async function logout() {
  try {
    await api.post("/api/v1/auth/logout");
  } catch { /* the token is dropped here whatever the server says */ }
  session.clear();
  sessionStorage.removeItem("pharmo2o.store");
  history.replaceState(null, "", "/console/");
  showLogin("You are signed out.");
}

window.addEventListener("pharmo2o:signed-out", () => {
  if (!state) return;
  session.clear();
  showLogin("Your session has ended (signed out or expired). Please sign in again.");
});

// ------------------------------------------------------------------ layout

function roleLabel(role) {
  return { admin: "Chain admin", store_manager: "Store manager", pharmacist: "Pharmacist", clerk: "Clerk" }[role] || role;
}

function renderLayout() {
  const nav = h("nav", { class: "sidenav", "aria-label": "Console" });
  let section = null;
  for (const page of state.pages) {
    if (page.section !== section) {
      section = page.section;
      nav.append(h("div", { class: "section" }, section));
    }
    nav.append(h("a", { href: page.path, "data-page": page.id }, page.title));
  }
  nav.addEventListener("click", (e) => {
    const a = e.target.closest("a[data-page]");
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    navigate(a.getAttribute("href"));
  });
  const { user } = state;
  const main = h("main", { id: "main", tabindex: "-1" });
  clear(root).append(h("div", { class: "layout" },
    h("header", { class: "topbar" },
      h("span", { class: "brand" }, "pharmo2o"),
      h("div", { class: "who" },
        h("span", { class: "name", "data-user": user.name }, user.name),
        h("span", { class: "role", "data-role": user.role }, roleLabel(user.role)),
        state.storeName ? h("span", { class: "store" }, state.storeName) : null,
        h("button", { type: "button", class: "small", id: "logout", onclick: logout }, "Sign out"))),
    nav, main));
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  route();
}

window.addEventListener("popstate", () => { if (state) route(); });

async function route() {
  runCleanups();
  const main = document.getElementById("main");
  const id = location.pathname.replace(/^\/console\/?/, "").split("/")[0];
  if (!id) {
    if (state.pages.length) return navigate(state.pages[0].path, { replace: true });
    clear(main).append(h("div", { class: "banner info" }, "No console page is available for your role."));
    return;
  }
  document.querySelectorAll("nav.sidenav a").forEach((a) => {
    if (a.dataset.page === id) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  const page = state.pages.find((p) => p.id === id);
  if (!page) {
    document.title = "Not available · pharmo2o console";
    clear(main).append(h("h1", {}, "Not available"),
      h("div", { class: "banner warn", role: "alert", "data-refused": id },
        `The page "${id}" is not available for your role (${roleLabel(state.user.role)}), or its plugin is not enabled.`));
    return;
  }
  document.title = `${page.title} · pharmo2o console`;
  clear(main).append(h("p", { class: "muted" }, "Loading…"));
  const token = Symbol(id);
  route.current = token;
  try {
    const module = await import(page.script);
    if (route.current !== token) return;
    const container = h("div", { class: "page", "data-page": page.id });
    clear(main).append(container);
    await module.render(pageContext(page, container));
    container.dataset.ready = "true";
  } catch (err) {
    if (route.current !== token) return;
    if (err instanceof ApiError && err.status === 401) return;
    clear(main).append(h("h1", {}, page.title), ui.error(err));
  }
}

function pageContext(page, container) {
  return {
    id: page.id,
    title: page.title,
    root: container,
    user: state.user,
    api,
    navigate,
    /** Stores the user can see (cached for the session). */
    stores: () => state.storesPromise,
    /** Run `fn` when the user leaves the page. */
    onCleanup: (fn) => cleanups.push(fn),
    /** Call `fn` every `ms` milliseconds while the page is shown. */
    every(ms, fn) {
      const handle = setInterval(fn, ms);
      cleanups.push(() => clearInterval(handle));
      return handle;
    },
  };
}

// ------------------------------------------------------------------- start

async function start() {
  const [me, pages] = await Promise.all([api.get("/api/v1/auth/me"), api.get("/api/v1/console/pages")]);
  if (!["admin", "store_manager", "pharmacist", "clerk"].includes(me.role)) {
    session.clear();
    showLogin("The console is for staff accounts.");
    return;
  }
  state = { user: me, pages: pages.items, storeName: null };
  state.storesPromise = api.all("/api/v1/stores").catch(() => []);
  if (me.store_id) {
    const stores = await state.storesPromise;
    const mine = stores.find((s) => s.id === me.store_id);
    state.storeName = mine ? mine.name : null;
  }
  renderLayout();
  await route();
}

async function boot() {
  if (!session.token()) return showLogin();
  try {
    await start();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return showLogin("Your session has ended. Please sign in again.");
    clear(root).append(h("div", { class: "login" }, ui.error(err)));
  }
}

boot();
