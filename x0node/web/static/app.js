// The signed-in interface: one page shell, a view per section, live data over server-sent events.
import { authState, get, patch, post, ApiError } from "./api.js";
import { h, fmtDuration, fmtBytes, fmtRate, fmtNum, fmtTime, shortId, qualityBadge } from "./dom.js";
import { drawTopology, QUALITY_COLOURS } from "./topology.js";
import { firmwareView } from "./firmware.js";
import { incidentsView } from "./incidents.js";

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
  "/incidents": [],
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

// What a person reads in the events list: the detector's feature vectors (its data feed, every 30 s) are
// left out, and an event that repeats one seen within GROUP_WINDOW_S (a neighbour dropping again and
// again, and coming back) is folded into it: one line "×N since …", placed at its latest occurrence.
// Drops (down, left, refused, lost) are marked.
const HIDDEN_KINDS = new Set(["FeatureVector", "feature_vector"]);
const GROUP_WINDOW_S = 600;
const isDrop = (e) => /down|left|drop|refused|lost/i.test(e.kind || "");
export function groupEvents(events) {
  const out = [];
  const seen = new Map();
  for (const e of events) {
    if (HIDDEN_KINDS.has(e.kind)) continue;
    const key = `${e.kind}\u0000${e.message || ""}`;
    const g = seen.get(key);
    if (g && e.time - g.last.time <= GROUP_WINDOW_S) {
      g.count += 1; g.last = e;
      if (out[out.length - 1] !== g) { out.splice(out.indexOf(g), 1); out.push(g); }
    } else {
      const fresh = { key, first: e, last: e, count: 1 };
      out.push(fresh); seen.set(key, fresh);
    }
  }
  return out;
}

const kindWords = (k) => String(k || "").replace(/_/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();

function eventList(events, max) {
  const items = groupEvents(events).slice(-max).reverse();
  if (!items.length) return h("p", { class: "empty" }, "No events yet.");
  return h("ul", { class: "events" }, items.map((g) =>
    h("li", { class: isDrop(g.last) ? "drop" : "", "data-kind": g.last.kind }, h("time", {}, fmtTime(g.last.time)),
      h("span", { class: "kind" }, kindWords(g.last.kind)), h("span", {}, g.last.message || ""),
      g.count > 1 ? h("span", { class: "repeat", title: `first at ${fmtTime(g.first.time)}` },
        `×${g.count} since ${fmtTime(g.first.time)}`) : null)));
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// the detector's and the healing loop's state, from the services' status (when they run)
function loopCards(services) {
  const an = services?.anomaly, he = services?.healing;
  const out = [];
  const detector = !an ? ["not running", "The anomaly detector is not enabled on this node."]
    : an.running === false || an.error ? ["stopped", an.error || "not running"]
      : [an.observe?.acting ? "acting" : "observing",
        `phase ${an.observe?.phase ?? "–"}, layer ${an.live_layer ?? "–"}, ${an.evaluations ?? 0} evaluations, ${an.peers ?? 0} peers` +
        (typeof an.observe?.precision === "number" ? `, precision ${(an.observe.precision * 100).toFixed(0)} %` : "")];
  const healing = !he ? ["not running", "The self-healing loop is not enabled on this node."]
    : he.running === false || he.error ? ["stopped", he.error || "not running"]
      : [he.mode === "active" ? "active" : "observing",
        `${plural((he.open || []).length, "open incident")}, ${plural((he.symptoms || []).length, "symptom")}, ` +
        `${he.pinned ? "mode set by the operator" : "mode automatic"}`];
  out.push(h("section", { class: "stats", id: "dash-loops" },
    h("div", { class: "stat loop", id: "dash-detector" }, h("div", { class: "label" }, "Anomaly detector"),
      h("div", { class: "value" }, detector[0]), h("div", { class: "hint" }, detector[1])),
    h("a", { class: "stat loop", id: "dash-healing", href: "/incidents", "data-nav": true },
      h("div", { class: "label" }, "Self-healing"), h("div", { class: "value" }, healing[0]),
      h("div", { class: "hint" }, healing[1]))));
  return out;
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

function healthCard(st) {
  const c = card("Health", st.health || "–", `health-${st.health || "unknown"}`);
  if (st.health && st.health !== "ok") {
    c.append(h("div", { class: "reason", id: "health-reason" }, st.health_reason || "no reason given"));
  }
  return c;
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
        healthCard(st),
        card("Neighbours", String(up), "neighbours-count"),
        card("Routes", String(state.routes.length)),
        card("Uptime", fmtDuration(st.uptime_s)),
        card("CPU", fmtNum(st.cpu_percent, 0, " %")),
        card("Memory", mem)),
      ...loopCards(st.services),
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
      t.nodes.length <= 1 ? h("p", { class: "hint", id: "topology-alone" }, "Only this node is known so far: no other "
        + "node has answered. Check that a mesh interface is up and another node is in range.") : null,
      h("div", { class: "graph" }, drawTopology(t)),
      h("ul", { class: "legend" }, Object.entries(QUALITY_COLOURS).map(([q]) =>
        h("li", {}, h("span", { class: `swatch q-${q}` }), q)))),
      // the node list: the routing core's nodes with their node-directory entries (name, role, version, health)
      h("section", { class: "card" }, h("h2", {}, "Nodes"),
        table(["Name", "Node", "Role", "Version", "Health", "Neighbours", "Reachable"], t.nodes.map((n) => [
          n.name ? `${n.name}${n.self ? " (this node)" : ""}` : (n.self ? "this node" : "–"),
          h("span", { class: "mono", title: n.node_id }, shortId(n.node_id)),
          (n.roles && n.roles.length ? n.roles.join(", ") : n.role) ?? "–", n.version ?? "–",
          n.health ? h("span", { class: `pill health-${n.health}`, title: n.health_reason || "" }, n.health) : "–",
          n.neighbours_up ?? "–", n.reachable === false ? "no" : "yes"]), "No nodes known."))];
  },
  "/events": () => [h("section", { class: "card" }, h("h2", {}, "Events"), eventList(state.events, EVENTS_KEPT))],
  "/incidents": () => incidentsView(),
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

// a setting's range in words ("0.01 – 10 s", "at least 0 s")
function rangeText(m) {
  const u = m.unit ? ` ${m.unit}` : "";
  if (m.min != null && m.max != null) return `valid: ${m.min} – ${m.max}${u}`;
  if (m.min != null) return `valid: at least ${m.min}${u}`;
  if (m.max != null) return `valid: at most ${m.max}${u}`;
  return m.unit ? `in ${m.unit}` : "";
}

async function loadConfig(box) {
  let cfg, schema;
  try {
    [cfg, schema] = await Promise.all([get("/api/v1/config"), get("/api/v1/config/schema")]);
  } catch (err) { box.replaceChildren(h("p", { class: "message" }, err.message)); return; }
  const msg = h("p", { class: "message", role: "alert" });
  // the server validates every value (ranges included) and names the key it refuses
  const form = h("form", { id: "config-form", novalidate: true });
  const inputs = [];
  // timers (the routing section) first and open; the other sections folded under "Advanced";
  // read-only ones (changed in the config file on the device) listed last, as text
  const advanced = h("details", { class: "advanced" }, h("summary", {}, "Advanced settings"));
  const fixed = h("details", { class: "advanced", id: "cfg-read-only" }, h("summary", {}, "Read-only here (edit the config file on the device)"));
  const sections = Object.entries(cfg).sort(([a], [b]) => (a === "routing" ? -1 : b === "routing" ? 1 : 0));
  for (const [section, values] of sections) {
    if (!values || typeof values !== "object" || Array.isArray(values)) continue;
    const sm = schema.sections[section] || { label: section, description: "" };
    const fs = h("fieldset", { id: `cfg-${section}` }, h("legend", {}, sm.label),
      sm.description ? h("p", { class: "hint" }, sm.description) : null);
    let editable = 0;
    for (const [key, value] of Object.entries(values)) {
      const name = `${section}.${key}`;
      const m = schema.settings[name] || { label: key, unit: "", description: "", read_only: false };
      const id = `cfg-${section}-${key}`;
      const shown = Array.isArray(value) ? value.join(", ") || "(none)" : value === null ? "(not set)"
        : typeof value === "object" ? JSON.stringify(value) : String(value);
      if (m.read_only || !["number", "boolean", "string"].includes(typeof value)) {
        fs.append(h("div", { class: "ro setting", "data-key": name },
          h("span", {}, h("span", { class: "name" }, m.label), m.description ? h("small", {}, m.description) : null),
          h("code", { id }, `${shown}${m.unit && typeof value === "number" ? ` ${m.unit}` : ""}`)));
        continue;
      }
      let input;
      const help = [m.description, rangeText(m)].filter(Boolean).join(" · ");
      const describedBy = help ? `${id}-help` : null;
      if (typeof value === "number") input = h("input", { type: "number", step: "any", name, id, value, "aria-describedby": describedBy });
      else if (typeof value === "boolean") input = h("input", { type: "checkbox", name, id, checked: value, "aria-describedby": describedBy });
      else input = h("input", { type: "text", name, id, value, maxlength: 256, "aria-describedby": describedBy });
      inputs.push({ section, key, value, input });
      editable += 1;
      const label = h("span", { class: "name" }, m.label, m.unit ? h("span", { class: "unit" }, ` (${m.unit})`) : null);
      fs.append(h("div", { class: "setting", "data-key": name },
        h("label", { class: input.type === "checkbox" ? "check" : "", title: name }, label, input),
        help ? h("small", { class: "help", id: describedBy }, help) : null));
    }
    if (fs.querySelector(".setting") === null) continue;
    if (!editable) fixed.append(fs);
    else (section === "routing" ? form : advanced).append(fs);
  }
  if (advanced.children.length > 1) form.append(advanced);
  if (fixed.children.length > 1) form.append(fixed);
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
  pill.textContent = st.health && st.health !== "ok" && st.health_reason ? `${st.health}: ${st.health_reason}` : st.health || "…";
  pill.className = `pill health-${st.health || "unknown"}`;
  pill.title = st.health_reason ? `node health: ${st.health_reason}` : "node health";
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
