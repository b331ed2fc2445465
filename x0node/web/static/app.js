// The signed-in interface: one page shell, a view per section, live data over server-sent events.
import { authState, get, patch, post, ApiError } from "./api.js";
import { h, fmtDuration, fmtBytes, fmtRate, fmtNum, fmtTime, shortId, qualityBadge } from "./dom.js";
import { drawTopology, QUALITY_COLOURS } from "./topology.js";
import { firmwareView } from "./firmware.js";

const state = { status: null, neighbours: [], routes: [], topology: { nodes: [], links: [] }, events: [], lastSeq: 0 };
const EVENTS_KEPT = 200;
const view = document.getElementById("view");

// which views depend on which data (so a live update never wipes a form being edited)
const DEPENDS = {
  "/": ["status", "neighbours", "routes", "events"],
  "/neighbours": ["neighbours"],
  "/routes": ["routes"],
  "/topology": ["topology"],
  "/events": ["events"],
  "/settings": [],
  "/firmware": [],
};

function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { "data-label": headers[i] }, c)))))));
}

function neighbourRows(list) {
  return list.map((n) => [
    h("span", { class: "mono", title: n.node_id }, shortId(n.node_id)), n.ifname ?? "–", n.state ?? "–",
    fmtNum(n.rtt_ms, 1, " ms"), typeof n.loss === "number" ? `${(n.loss * 100).toFixed(1)} %` : "–",
    throughputCell(n), qualityBadge(n.quality), n.cost ?? "–",
  ]);
}

// the rate, and where it came from: the kernel's link speed, or measured by probe trains
const THROUGHPUT_SOURCES = { kernel: "link speed reported by the kernel", probe: "measured by probe trains" };
function throughputCell(n) {
  const how = THROUGHPUT_SOURCES[n.throughput_source];
  return h("span", { class: "throughput", title: how || "not known yet", "data-source": n.throughput_source || "" },
    fmtRate(n.throughput_bps), how ? h("small", { class: "source" }, ` ${n.throughput_source}`) : "");
}

// the node manager's statistics of the whole mesh (from /api/v1/topology)
function meshStats(st) {
  if (!st) return [];
  const hist = st.quality_histogram || {};
  return [
    h("section", { class: "stats", id: "mesh-stats" },
      card("Nodes", String(st.nodes ?? "–"), "mesh-nodes"),
      card("Reachable", String(st.reachable ?? "–"), "mesh-reachable"),
      card("Links", String(st.links ?? "–"), "mesh-links"),
      card("Mean degree", fmtNum(st.mean_degree, 2), "mesh-degree"),
      card("Max hops", String(st.max_hops ?? "–"), "mesh-hops"),
      card("Joins / leaves", `${st.joins ?? "–"} / ${st.leaves ?? "–"}`, "mesh-churn")),
    h("section", { class: "card", id: "mesh-quality" }, h("h2", {}, "Links by quality"),
      h("ul", { class: "legend" }, Object.keys(QUALITY_COLOURS).filter((q) => q in hist).map((q) =>
        h("li", { "data-quality": q }, h("span", { class: `swatch q-${q}` }), `${q}: ${hist[q]}`)))),
  ];
}
const NEIGHBOUR_HEADERS = ["Node", "Interface", "State", "RTT", "Loss", "Throughput", "Quality", "Cost"];

function eventList(events, max) {
  const items = events.slice(-max).reverse();
  if (!items.length) return h("p", { class: "empty" }, "No events yet.");
  return h("ul", { class: "events" }, items.map((e) =>
    h("li", {}, h("time", {}, fmtTime(e.time)), h("span", { class: "kind" }, e.kind), h("span", {}, e.message || ""))));
}

// the [overlay] service: end-to-end sessions, NAT links, the managed yggdrasil (each only when running)
function overlayCards(ov) {
  if (!ov) return [];
  const out = [];
  if (ov.e2e) out.push(h("section", { class: "card", id: "dash-overlay" }, h("h2", {}, `Encrypted sessions (${ov.e2e.cipher})`),
    table(["Peer", "Session", "Received", "Sent"], (ov.e2e.peers || []).map((p) => [
      h("span", { class: "mono", title: p.node_id || p.key }, shortId(p.node_id || p.key)), p.established ? "up" : "handshake",
      fmtBytes(p.rx_bytes), fmtBytes(p.tx_bytes)]), "No encrypted traffic yet.")));
  if (ov.nat) out.push(h("section", { class: "card", id: "dash-nat" }, h("h2", {}, "NAT links"),
    table(["Peer", "Path", "Endpoint", "Punch", "Received", "Sent"], (ov.nat.peers || []).map((p) => [
      h("span", { class: "mono", title: p.node_id }, shortId(p.node_id)), p.established ? p.state : "down",
      h("span", { class: "mono" }, p.endpoint ?? "–"), fmtNum(p.punch_setup_s, 2, " s"), fmtBytes(p.rx_bytes),
      fmtBytes(p.tx_bytes)]), "No NAT link yet.")));
  if (ov.yggdrasil) out.push(h("section", { class: "card", id: "dash-yggdrasil" },
    h("h2", {}, `Yggdrasil ${ov.yggdrasil.running ? ov.yggdrasil.address || "" : "(not running)"}`),
    table(["Peer key", "Remote", "Received", "Sent"], (ov.yggdrasil.peers || []).map((p) => [
      h("span", { class: "mono", title: p.key }, shortId(p.key)), h("span", { class: "mono" }, p.remote),
      fmtBytes(p.bytes_recvd), fmtBytes(p.bytes_sent)]), "No yggdrasil peers yet.")));
  return out;
}

function card(label, value, cls = "") {
  return h("div", { class: `stat ${cls}` }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

const VIEWS = {
  "/": () => {
    const st = state.status || {};
    const mem = st.mem_total_bytes ? `${fmtBytes(st.mem_used_bytes)} / ${fmtBytes(st.mem_total_bytes)}` : "–";
    const up = state.neighbours.filter((n) => (n.state ?? "up") === "up").length;
    return [
      h("section", { class: "stats" },
        card("Health", st.health || "–", `health-${st.health || "unknown"}`),
        card("Neighbours", String(up), "neighbours-count"),
        card("Routes", String(state.routes.length)),
        card("Uptime", fmtDuration(st.uptime_s)),
        card("CPU", fmtNum(st.cpu_percent, 0, " %")),
        card("Memory", mem)),
      h("section", { class: "card" }, h("h2", {}, "Node"),
        h("dl", { class: "kv" },
          h("dt", {}, "Node id"), h("dd", { class: "mono" }, st.node_id || "–"),
          h("dt", {}, "Mesh address"), h("dd", { class: "mono" }, st.mesh_addr || "–"),
          h("dt", {}, "Interfaces"), h("dd", {}, (st.interfaces || []).join(", ") || "–"),
          h("dt", {}, "Version"), h("dd", {}, st.version || "–"))),
      h("section", { class: "card", id: "dash-neighbours" }, h("h2", {}, "Neighbours"),
        table(NEIGHBOUR_HEADERS, neighbourRows(state.neighbours), "No neighbours yet. Check that a mesh interface is up and another node is in range.")),
      ...overlayCards(st.services?.overlay),
      h("section", { class: "card" }, h("h2", {}, "Recent events"), eventList(state.events, 8)),
    ];
  },
  "/neighbours": () => [h("section", { class: "card" }, h("h2", {}, "Neighbours"),
    table(NEIGHBOUR_HEADERS, neighbourRows(state.neighbours), "No neighbours yet."))],
  "/routes": () => [h("section", { class: "card" }, h("h2", {}, `Routes (${state.routes.length})`),
    table(["Destination", "Via", "Interface", "Metric"], state.routes.map((r) => [
      h("span", { class: "mono" }, r.dest), h("span", { class: "mono" }, r.via ?? "–"), r.ifname ?? "–", r.metric ?? "–"]),
    "No routes installed."))],
  "/topology": () => {
    const t = state.topology || { nodes: [], links: [] };
    return [...meshStats(t.statistics),
      h("section", { class: "card" }, h("h2", {}, `Topology (${t.nodes.length} nodes, ${t.links.length} links)`),
      h("div", { class: "graph" }, drawTopology(t)),
      h("ul", { class: "legend" }, Object.entries(QUALITY_COLOURS).map(([q]) =>
        h("li", {}, h("span", { class: `swatch q-${q}` }), q))))];
  },
  "/events": () => [h("section", { class: "card" }, h("h2", {}, "Events"), eventList(state.events, EVENTS_KEPT))],
  "/settings": () => settingsView(),
  "/firmware": () => firmwareView(),
};

function settingsView() {
  const pwMsg = h("p", { class: "message", role: "alert" });
  const pwForm = h("form", { id: "password-form" },
    h("label", {}, "Current password", h("input", { type: "password", id: "current-password", autocomplete: "current-password", required: true, maxlength: 256 })),
    h("label", {}, "New password (at least 10 characters)", h("input", { type: "password", id: "new-password", autocomplete: "new-password", required: true, minlength: 10, maxlength: 256 })),
    h("button", { type: "submit", class: "primary" }, "Change password"), pwMsg);
  pwForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await post("/api/v1/auth/password", { current_password: pwForm.querySelector("#current-password").value,
        new_password: pwForm.querySelector("#new-password").value });
      pwForm.reset();
      pwMsg.textContent = "Password changed. Other sessions were signed out."; pwMsg.className = "message ok";
    } catch (err) { pwMsg.textContent = err.message; pwMsg.className = "message"; }
  });
  const cfgBox = h("div", {}, h("p", { class: "empty" }, "Loading…"));
  loadConfig(cfgBox);
  return [
    h("section", { class: "card" }, h("h2", {}, "Settings"), cfgBox),
    h("section", { class: "card" }, h("h2", {}, "Password"), pwForm),
  ];
}

async function loadConfig(box) {
  let cfg;
  try { cfg = await get("/api/v1/config"); } catch (err) { box.replaceChildren(h("p", { class: "message" }, err.message)); return; }
  const msg = h("p", { class: "message", role: "alert" });
  const form = h("form", { id: "config-form" });
  const inputs = [];
  // timers (the routing section) first and open; the other sections folded under "Advanced"
  const advanced = h("details", { class: "advanced" }, h("summary", {}, "Advanced settings"));
  const sections = Object.entries(cfg).sort(([a], [b]) => (a === "routing" ? -1 : b === "routing" ? 1 : 0));
  for (const [section, values] of sections) {
    if (!values || typeof values !== "object" || Array.isArray(values)) continue;
    const fs = h("fieldset", { id: `cfg-${section}` }, h("legend", {}, section === "routing" ? "Timers (routing)" : section));
    for (const [key, value] of Object.entries(values)) {
      const name = `${section}.${key}`;
      let input;
      if (typeof value === "number") input = h("input", { type: "number", step: "any", name, id: `cfg-${section}-${key}`, value });
      else if (typeof value === "boolean") input = h("input", { type: "checkbox", name, id: `cfg-${section}-${key}`, checked: value });
      else if (typeof value === "string") input = h("input", { type: "text", name, id: `cfg-${section}-${key}`, value, maxlength: 256 });
      else { fs.append(h("div", { class: "ro" }, h("span", {}, key), h("code", {}, JSON.stringify(value)))); continue; }
      inputs.push({ section, key, value, input });
      fs.append(h("label", { class: input.type === "checkbox" ? "check" : "" }, key, input));
    }
    if (fs.children.length > 1) (section === "routing" ? form : advanced).append(fs);
  }
  if (advanced.children.length > 1) form.append(advanced);
  form.append(h("button", { type: "submit", class: "primary" }, "Save settings"), msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
    const changes = {};
    for (const it of inputs) {
      let v;
      if (it.input.type === "number") {
        if (it.input.value.trim() === "") continue;
        v = Number(it.input.value);
      } else if (it.input.type === "checkbox") v = it.input.checked;
      else v = it.input.value;
      if (v !== it.value) (changes[it.section] ||= {})[it.key] = v;
    }
    if (!Object.keys(changes).length) { msg.textContent = "Nothing changed."; msg.className = "message"; return; }
    try {
      await patch("/api/v1/config", changes);
      msg.textContent = "Saved. The new values are in effect and kept across restarts."; msg.className = "message ok";
      for (const it of inputs) {
        const c = changes[it.section];
        if (c && it.key in c) it.value = c[it.key];
      }
    } catch (err) {
      msg.textContent = err.key ? `${err.key}: ${err.message}` : err.message; msg.className = "message";
      const bad = err.key && inputs.find((it) => `${it.section}.${it.key}` === err.key);
      if (bad) { bad.input.classList.add("invalid"); bad.input.focus(); }
    }
  });
  box.replaceChildren(form);
}

function currentPath() { return location.pathname in VIEWS ? location.pathname : "/"; }

function render() {
  const path = currentPath();
  document.querySelectorAll("nav.tabs a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === path));
  view.replaceChildren(...VIEWS[path]());
  view.dataset.view = path;
}

function renderHeader() {
  const st = state.status || {};
  document.getElementById("node-name").textContent = st.name || shortId(st.node_id) || "x0node";
  const pill = document.getElementById("health");
  pill.textContent = st.health || "…";
  pill.className = `pill health-${st.health || "unknown"}`;
  document.title = `x0node – ${st.name || shortId(st.node_id) || ""}`;
}

function update(kind, data) {
  if (kind === "events") {
    for (const e of data) if (e.seq > state.lastSeq) { state.events.push(e); state.lastSeq = e.seq; }
    state.events = state.events.slice(-EVENTS_KEPT);
  } else state[kind] = data;
  if (kind === "status") renderHeader();
  if ((DEPENDS[currentPath()] || []).includes(kind)) render();
}

let stream = null;
function connect() {
  stream = new EventSource(`/api/v1/stream?since=${state.lastSeq}`);
  const live = document.getElementById("live");
  stream.onopen = () => { live.classList.add("on"); live.title = "live updates on"; };
  stream.onerror = async () => {
    live.classList.remove("on"); live.title = "live updates interrupted; retrying";
    if (stream.readyState === EventSource.CLOSED) {
      const st = await authState().catch(() => null);
      if (st && !st.authenticated) location.assign("/login");
      else setTimeout(connect, 3000);
    }
  };
  for (const kind of ["status", "neighbours", "routes", "topology", "events"]) {
    stream.addEventListener(kind, (ev) => { try { update(kind, JSON.parse(ev.data)); } catch { /* ignore bad frame */ } });
  }
  stream.addEventListener("logout", () => location.assign("/login"));
}

async function main() {
  const st = await authState();
  if (!st.authenticated) { location.assign(st.password_set ? "/login" : "/setup"); return; }
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest("a[data-nav]");
    if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
    ev.preventDefault();
    if (a.getAttribute("href") !== location.pathname) history.pushState({}, "", a.getAttribute("href"));
    render();
  });
  window.addEventListener("popstate", render);
  document.getElementById("logout").addEventListener("click", async () => {
    try { await post("/api/v1/auth/logout", {}); } finally { location.assign("/login"); }
  });
  const [status, neighbours, routes, topology, events] = await Promise.all(
    ["status", "neighbours", "routes", "topology", "events?limit=200"].map((p) => get(`/api/v1/${p}`)));
  Object.assign(state, { status, neighbours, routes, topology });
  update("events", events);
  renderHeader();
  render();
  connect();
}

main().catch((err) => {
  view.replaceChildren(h("p", { class: "card message" }, err instanceof ApiError ? err.message : `Cannot reach the node: ${err.message}`));
});
