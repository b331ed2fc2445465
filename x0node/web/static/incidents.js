// The Incidents page: the self-healing loop's observe/active switch, recent incidents, and one incident's
// timeline (detected -> root cause with confidence -> action -> verified or undone), its causal graph
// (interactive SVG; Graphviz DOT download) and "was this right?" feedback. Data: /api/v1/healing...
// Below them, the anomaly detector's alarms on this node with "real fault / false alarm" verdicts, which
// are what its observe mode is judged by (with confirmed incidents). Data: /api/v1/anomaly/alarms.
// The page polls while it is shown; a refresh never replaces a form being filled in.
import { get, post, put, ApiError } from "./api.js";
import { h, s, fmtTime, fmtNum } from "./dom.js";

const POLL_MS = 3000;
const MODE_CHOICES = [
  ["auto", "Automatic", "observe first; act once observe-mode decisions prove right"],
  ["observe", "Observe only", "plan and record, never act"],
  ["active", "Active", "repair: act, verify, undo what does not help"],
];
const PHASE_ICONS = { detected: "!", root_cause: "?", decision: "→", action: "⚙", undone: "↶", verified: "✓",
  not_verified: "✗", closed: "■", feedback: "✎" };
const COLUMNS = ["action", "cause", "evidence", "symptom"];
const COLUMN_TITLES = { action: "Actions", cause: "Causes", evidence: "Evidence", symptom: "Symptoms" };
const NODE_W = 200, NODE_H = 48, COL_GAP = 56, ROW_GAP = 18, PAD = 12, TOP = 34;

// node ids (16 hex digits) shortened to their first 8, as elsewhere in the UI; the full names are in
// the tooltips and the graph's details
const short = (text) => String(text || "").replace(/[0-9a-f]{12,}/g, (m) => m.slice(0, 8));
const shortSpan = (text) => h("span", { title: text }, short(text));
const pct = (v) => (typeof v === "number" ? `${Math.round(v * 100)} %` : "–");

export function incidentsView() {
  const root = h("div", { id: "incidents", class: "stack" }, h("p", { class: "empty card" }, "Loading…"));
  const id = Number(new URLSearchParams(location.search).get("id")) || null;
  const page = { root, id, detailKey: null, timer: null };
  refresh(page, true);
  page.timer = setInterval(() => {
    if (!root.isConnected) { clearInterval(page.timer); return; }
    refresh(page, false);
  }, POLL_MS);
  return [root];
}

async function refresh(page, first) {
  let status, list;
  try {
    [status, list] = await Promise.all([get("/api/v1/healing"), get("/api/v1/healing/incidents?limit=50")]);
  } catch (err) {
    if (first || !page.root.querySelector("#healing-mode")) {
      const text = err instanceof ApiError && err.status === 503 ? err.message : `Cannot load incidents: ${err.message}`;
      page.root.replaceChildren(h("section", { class: "card", id: "healing-off" }, h("h2", {}, "Self-healing"),
        h("p", { class: "message" }, text)));
    }
    return;
  }
  if (first || !page.root.querySelector("#healing-mode")) {
    page.modeCard = modeCard(status);
    page.listCard = h("section", { class: "card", id: "incident-list" });
    page.detail = h("div", { id: "incident-detail-box", class: "stack" });
    page.alarmCard = h("section", { class: "card", id: "detector-alarms" }, h("h2", {}, "Detector alarms"));
    page.alarmKey = null;
    page.root.replaceChildren(page.modeCard, page.detail, page.listCard, page.alarmCard);
  } else {
    updateMode(page.modeCard, status);
  }
  page.listCard.replaceChildren(h("h2", {}, `Incidents (${list.length})`), incidentTable(list, page.id));
  await loadAlarms(page);
  if (page.id) await loadDetail(page);
}

// ---- the detector's alarms ----------------------------------------------------------------------------

async function loadAlarms(page) {
  let data;
  try { data = await get("/api/v1/anomaly/alarms?limit=20"); } catch (err) {
    const text = err instanceof ApiError && err.status === 503 ? err.message : `Cannot load the detector's alarms: ${err.message}`;
    page.alarmKey = null;
    page.alarmCard.replaceChildren(h("h2", {}, "Detector alarms"), h("p", { class: "message" }, text));
    return;
  }
  const key = JSON.stringify(data);
  if (key === page.alarmKey) return;
  page.alarmKey = key;
  page.alarmCard.replaceChildren(...alarmCardBody(page, data));
}

function observeText(o) {
  const phase = o.acting ? "acting on its alarms" : `observing (${o.phase}; its alarms are recorded, not acted on)`;
  const prec = typeof o.precision === "number" ? `${pct(o.precision)} of ${o.outcomes} judged alarms were real faults` : "no alarm judged yet";
  const rec = typeof o.recall === "number" ? `${o.faults - o.missed} of ${o.faults} confirmed faults caught (${pct(o.recall)})` : "no confirmed fault yet";
  return `The detector is ${phase}: ${prec}; ${rec}.`;
}

function alarmCardBody(page, data) {
  const msg = h("p", { class: "message", role: "alert", id: "alarm-message" });
  const rows = data.alarms.map((a) => {
    const verdict = a.fault == null ? "not judged" : `${a.fault ? "real fault" : "false alarm"} (${a.source})`;
    const send = async (fault) => {
      try {
        await post(`/api/v1/anomaly/alarms/${a.id}/feedback`, { fault });
        page.alarmKey = null;
        await loadAlarms(page);
        page.alarmCard.querySelector("#alarm-message").textContent = `Alarm #${a.id}: stored as ${fault ? "a real fault" : "a false alarm"}.`;
        page.alarmCard.querySelector("#alarm-message").className = "message ok";
      } catch (err) { msg.textContent = err.message; msg.className = "message"; }
    };
    return h("tr", { "data-alarm": a.id },
      h("td", { "data-label": "#" }, `#${a.id}`), h("td", { "data-label": "Raised" }, fmtTime(a.raised)),
      h("td", { "data-label": "Cleared" }, a.cleared != null ? fmtTime(a.cleared) : "up"),
      h("td", { "data-label": "Verdict", class: "verdict" }, verdict),
      h("td", { "data-label": "Was it a fault?" },
        h("button", { type: "button", class: "secondary alarm-fault", onclick: () => send(true) }, "Real fault"), " ",
        h("button", { type: "button", class: "secondary alarm-false", onclick: () => send(false) }, "False alarm")));
  });
  const table = rows.length
    ? h("div", { class: "table-wrap" }, h("table", { class: "alarms" },
      h("thead", {}, h("tr", {}, ["#", "Raised", "Cleared", "Verdict", "Was it a fault?"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)))
    : h("p", { class: "empty" }, "No alarm raised on this node.");
  return [h("h2", {}, "Detector alarms"), h("p", { class: "hint", id: "observe-now" }, observeText(data.observe)), table, msg];
}

// ---- the switch ---------------------------------------------------------------------------------------

function modeCard(status) {
  const msg = h("p", { class: "message", role: "alert", id: "mode-message" });
  const fs = h("fieldset", { class: "switch", id: "mode-switch" }, h("legend", {}, "Mode"),
    MODE_CHOICES.map(([value, label, hint]) => h("label", { class: "choice" },
      h("input", { type: "radio", name: "healing-mode", value, id: `mode-${value}` }),
      h("span", {}, h("strong", {}, label), h("small", {}, hint)))));
  const now = h("p", { id: "mode-now", class: "hint" });
  const card = h("section", { class: "card", id: "healing-mode" }, h("h2", {}, "Self-healing"), now, fs, msg);
  fs.addEventListener("change", async (ev) => {
    const value = ev.target.value;
    fs.disabled = true;
    try {
      const st = await put("/api/v1/healing/mode", { mode: value });
      msg.textContent = `Switched to ${labelOf(value)}; kept across restarts.`; msg.className = "message ok";
      updateMode(card, st);
    } catch (err) {
      msg.textContent = err.message; msg.className = "message";
      updateMode(card, card._status);
    } finally { fs.disabled = false; }
  });
  updateMode(card, status);
  return card;
}

const labelOf = (value) => (MODE_CHOICES.find(([v]) => v === value) || [value, value])[1];

function updateMode(card, st) {
  if (!st) return;
  card._status = st;
  const choice = st.pinned || "auto";
  const input = card.querySelector(`#mode-${choice}`);
  if (input && !card.querySelector("fieldset").disabled) input.checked = true;
  const prec = typeof st.observe_precision === "number"
    ? `; observe-mode decisions right so far: ${pct(st.observe_precision)} of ${st.observe_outcomes}` : "";
  const open = (st.open || []).length;
  card.querySelector("#mode-now").textContent =
    `Now ${st.mode === "active" ? "acting (active)" : "observing (no action taken)"}, ` +
    `${st.pinned ? "chosen by the operator" : "chosen automatically"}${prec}. ` +
    `${open} open incident${open === 1 ? "" : "s"}, ${(st.symptoms || []).length} symptom${(st.symptoms || []).length === 1 ? "" : "s"}.`;
  card.dataset.mode = st.mode;
}

// ---- the list -----------------------------------------------------------------------------------------

function incidentTable(list, selected) {
  if (!list.length) return h("p", { class: "empty" }, "No incidents recorded. The loop is watching.");
  const headers = ["#", "Opened", "Symptoms", "Root cause", "Action", "Outcome", "MTTR"];
  return h("div", { class: "table-wrap" }, h("table", { class: "incidents" },
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, list.map((i) => {
      const cause = i.root_cause ? `${i.root_cause} at ${i.element} (${pct(i.confidence)})` : (i.cause || "–");
      const cells = [
        h("a", { href: `/incidents?id=${i.id}`, "data-nav": true, class: "incident-link" }, `#${i.id}`),
        fmtTime(i.opened), shortSpan((i.symptoms || []).join(", ") || "–"), shortSpan(cause), i.action || "–",
        h("span", { class: `badge outcome-${i.outcome || i.state}` }, i.outcome || i.state),
        i.mttr_s != null ? fmtNum(i.mttr_s, 1, " s") : "–"];
      return h("tr", { class: i.id === selected ? "selected" : "", "data-incident": i.id },
        cells.map((c, k) => h("td", { "data-label": headers[k] }, c)));
    }))));
}

// ---- one incident -------------------------------------------------------------------------------------

async function loadDetail(page) {
  let inc;
  try { inc = await get(`/api/v1/healing/incidents/${page.id}`); } catch (err) {
    page.detail.replaceChildren(h("section", { class: "card" }, h("p", { class: "message" }, err.message)));
    return;
  }
  const key = JSON.stringify([inc.state, inc.steps.length, inc.feedback.length]);
  if (key === page.detailKey) return;
  page.detailKey = key;
  const fb = page.detail.querySelector("#feedback");
  const keepForm = fb && (fb.contains(document.activeElement) || fb.querySelector("textarea").value);
  const cards = [timelineCard(inc), graphCard(inc)];
  if (keepForm) page.detail.replaceChildren(cards[0], fb, cards[1]);
  else page.detail.replaceChildren(cards[0], feedbackCard(page, inc), cards[1]);
}

function timelineCard(inc) {
  return h("section", { class: "card", id: "incident-detail", "data-state": inc.state },
    h("h2", {}, `Incident #${inc.id} — ${inc.outcome || inc.state}`),
    h("ol", { class: "timeline", id: "timeline" }, inc.steps.map((st) =>
      h("li", { class: `step phase-${st.phase}${st.ok === false ? " failed" : ""}`, "data-phase": st.phase },
        h("span", { class: "icon", "aria-hidden": "true" }, PHASE_ICONS[st.phase] || "•"),
        h("div", {},
          h("div", {}, h("strong", {}, st.title), " ", h("time", {}, fmtTime(st.at))),
          h("div", { class: "what", title: st.text }, short(st.text)),
          typeof st.confidence === "number" ? h("div", { class: "confidence" },
            h("meter", { min: 0, max: 1, value: st.confidence, "aria-label": "confidence" }), ` confidence ${pct(st.confidence)}`) : null,
          st.detail ? h("div", { class: "hint", title: st.detail }, short(st.detail)) : null)))));
}

function feedbackCard(page, inc) {
  const msg = h("p", { class: "message", role: "alert", id: "feedback-message" });
  const note = h("textarea", { id: "feedback-note", maxlength: 500, rows: 2, placeholder: "What really happened (optional)" });
  const send = async (right) => {
    try {
      const updated = await post(`/api/v1/healing/incidents/${inc.id}/feedback`, { right, note: note.value });
      note.value = "";
      msg.textContent = "Thank you: stored with the incident."; msg.className = "message ok";
      page.detailKey = null;
      const cards = [timelineCard(updated), graphCard(updated)];
      page.detail.replaceChildren(cards[0], card, cards[1]);
      page.detailKey = JSON.stringify([updated.state, updated.steps.length, updated.feedback.length]);
      past.replaceChildren(...pastAnswers(updated));
    } catch (err) { msg.textContent = err.message; msg.className = "message"; }
  };
  const past = h("ul", { class: "feedback-list" }, pastAnswers(inc));
  const card = h("section", { class: "card", id: "feedback" }, h("h2", {}, "Was this right?"),
    h("p", { class: "hint" }, "Your answer is kept in the node's knowledge base and counted in the diagnosis figures."),
    h("label", {}, "Note", note),
    h("div", { class: "buttons" },
      h("button", { type: "button", class: "primary", id: "feedback-yes", onclick: () => send(true) }, "Yes, right"),
      h("button", { type: "button", class: "secondary", id: "feedback-no", onclick: () => send(false) }, "No, wrong")),
    msg, past);
  return card;
}

function pastAnswers(inc) {
  return inc.feedback.map((f) => h("li", {}, h("time", {}, fmtTime(f.at)), " ", f.right ? "right" : "wrong",
    f.note ? ` — ${f.note}` : ""));
}

// ---- the causal graph ---------------------------------------------------------------------------------

function graphCard(inc) {
  const info = h("div", { class: "graph-info", id: "graph-info", "aria-live": "polite" },
    h("p", { class: "hint" }, "Select a box to see what it is and how it is linked."));
  const g = inc.graph;
  const body = g.nodes.length ? h("div", { class: "graph causal" }, drawGraph(g, info))
    : h("p", { class: "empty" }, "No diagnosis recorded yet.");
  return h("section", { class: "card", id: "causal-graph" }, h("h2", {}, "Causal graph"), body, info,
    h("p", {}, h("a", { id: "graph-dot", href: `/api/v1/healing/incidents/${inc.id}/graph.dot`, download: `incident-${inc.id}.dot` },
      "Download as Graphviz DOT")));
}

function clip(text, n) { return text.length > n ? `${text.slice(0, n - 1)}…` : text; }

function drawGraph(g, info) {
  const cols = Object.fromEntries(COLUMNS.map((c) => [c, []]));
  for (const n of g.nodes) (cols[n.kind] || cols.cause).push(n);
  cols.cause.sort((a, b) => (a.rank || 99) - (b.rank || 99));
  const used = COLUMNS.filter((c) => cols[c].length);
  const pos = new Map();
  const rows = Math.max(...used.map((c) => cols[c].length));
  const height = TOP + rows * (NODE_H + ROW_GAP) + PAD;
  used.forEach((c, ci) => {
    const offset = ((rows - cols[c].length) * (NODE_H + ROW_GAP)) / 2;
    cols[c].forEach((n, ri) => pos.set(n.id, { x: PAD + ci * (NODE_W + COL_GAP), y: TOP + offset + ri * (NODE_H + ROW_GAP) }));
  });
  const width = PAD * 2 + used.length * NODE_W + (used.length - 1) * COL_GAP;
  // drawn at its natural size: on a narrow screen its box scrolls sideways instead of shrinking the text
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "causal", role: "group",
    "aria-label": `causal graph: ${g.nodes.length} boxes, ${g.edges.length} links` });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
    markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  used.forEach((c, ci) => svg.append(s("text", { x: PAD + ci * (NODE_W + COL_GAP) + NODE_W / 2, y: 18,
    "text-anchor": "middle", class: "column" }, COLUMN_TITLES[c])));
  const ge = s("g", { class: "edges" });
  const edgeEls = [];
  for (const e of g.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2, mx = (x1 + x2) / 2;
    const path = s("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 2},${y2}`, class: `edge ${e.kind}`,
      "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to });
    path.append(s("title", {}, `${e.kind.replace("_", " ")} ${e.label || ""}`));
    ge.append(path);
    edgeEls.push(path);
  }
  const gn = s("g", { class: "nodes" });
  const nodeEls = new Map();
  for (const n of g.nodes) {
    const p = pos.get(n.id);
    const sub = n.kind === "cause" ? `${pct(n.confidence)} · ${n.element || ""}`
      : n.kind === "action" ? `${n.element || ""} · ${n.result || ""}` : n.element || "";
    const subShort = short(sub);
    const el = s("g", { class: `gnode ${n.kind}${n.current ? " current" : ""}${n.superseded ? " superseded" : ""}`,
      transform: `translate(${p.x},${p.y})`, tabindex: 0, role: "button", "data-id": n.id, "data-kind": n.kind,
      "aria-label": `${n.kind} ${n.label} ${sub}` },
    s("rect", { width: NODE_W, height: NODE_H, rx: 8 }),
    s("text", { x: 10, y: 20, class: "title" }, clip(n.label, 21)),
    s("text", { x: 10, y: 38, class: "sub" }, clip(subShort, 30)),
    s("title", {}, `${n.kind}: ${n.label}\n${sub}`));
    if (n.kind === "cause" && typeof n.confidence === "number") {
      el.append(s("rect", { x: 0, y: NODE_H - 4, width: Math.max(2, NODE_W * n.confidence), height: 4, class: "conf" }));
    }
    const choose = () => select(n, g, nodeEls, edgeEls, info);
    el.addEventListener("click", choose);
    el.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); choose(); } });
    nodeEls.set(n.id, el);
    gn.append(el);
  }
  svg.append(ge, gn);
  return svg;
}

const EDGE_WORDS = { could_explain: "could explain", explains: "explains", shows: "shows", observed_as: "observed as",
  acts_on: "acts on" };

function select(n, g, nodeEls, edgeEls, info) {
  const linked = new Set([n.id]);
  for (const e of g.edges) if (e.from === n.id || e.to === n.id) { linked.add(e.from); linked.add(e.to); }
  for (const [id, el] of nodeEls) {
    el.classList.toggle("selected", id === n.id);
    el.classList.toggle("dim", !linked.has(id));
  }
  for (const el of edgeEls) el.classList.toggle("dim", el.dataset.from !== n.id && el.dataset.to !== n.id);
  const byId = new Map(g.nodes.map((x) => [x.id, x]));
  const links = g.edges.filter((e) => e.from === n.id || e.to === n.id).map((e) => {
    const other = byId.get(e.from === n.id ? e.to : e.from);
    const words = EDGE_WORDS[e.kind] || e.kind;
    const txt = e.from === n.id ? `${words} ${other.kind} ${other.label} ${other.element || ""}`
      : `${other.kind} ${other.label} ${other.element || ""} ${words} this`;
    return h("li", {}, `${txt}${e.label ? ` (${e.label})` : ""}`);
  });
  const facts = [["Kind", n.kind], ["What", n.label], ["Where", n.element || "–"]];
  if (n.kind === "cause") facts.push(["Confidence", pct(n.confidence)], ["Rank", String(n.rank ?? "–")],
    ["Status", n.current ? "current diagnosis" : n.superseded ? "earlier diagnosis, replaced" : "alternative"]);
  if (n.kind === "evidence") facts.push(["Degree", fmtNum(n.degree, 2)]);
  if (n.kind === "action") facts.push(["Result", n.result || "–"]);
  info.replaceChildren(h("dl", { class: "kv", id: "graph-selected", "data-id": n.id },
    facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
  links.length ? h("ul", { class: "links" }, links) : h("p", { class: "hint" }, "Not linked to anything else."));
}
