// The Firmware page: updates (slots, upload with progress, install, roll back, mesh rollout with each
// node's progress, from /api/v1/ota, refreshed every few seconds while the page is shown) and the image
// this device runs with its bill of materials (GET /api/v1/firmware; /api/v1/firmware/sbom to download).
import { csrf, get, post } from "./api.js";
import { h } from "./dom.js";

const OTA_REFRESH_MS = 2000;

const KINDS = [["debian", "Debian packages"], ["python", "Python distributions"]];

export function firmwareView() {
  const box = h("div", {}, h("p", { class: "empty" }, "Loading…"));
  load(box);
  return [updatesCard(), h("section", { class: "card", id: "firmware" }, h("h2", {}, "Firmware"), box)];
}

function bar(percent, label) {
  const p = Math.max(0, Math.min(100, Number(percent) || 0));
  return h("progress", { max: 100, value: p, "aria-label": label, title: `${p}%` }, `${p}%`);
}

function updatesCard() {
  const msg = h("p", { class: "message", role: "status", id: "ota-message" });
  const say = (text, ok) => { msg.textContent = text; msg.className = ok ? "message ok" : "message"; };
  const state = h("div", { id: "ota-state" }, h("p", { class: "empty" }, "Loading…"));
  const bundleIn = h("input", { type: "file", id: "ota-bundle", accept: ".raucb" });
  const manifestIn = h("input", { type: "file", id: "ota-manifest", accept: ".json" });
  const upBar = h("progress", { id: "ota-upload-progress", max: 100, value: 0, hidden: true });
  const upload = h("form", { id: "ota-upload" },
    h("label", {}, "Bundle (.raucb)", bundleIn), h("label", {}, "Manifest (.raucb.manifest.json)", manifestIn),
    h("button", { type: "submit", class: "primary" }, "Upload and verify"), upBar);
  upload.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const b = bundleIn.files[0], m = manifestIn.files[0];
    if (!b || !m) { say("Choose the bundle and its manifest."); return; }
    try {
      const doc = JSON.parse(await m.text());
      const staged = await post("/api/v1/ota/manifest", doc);
      upBar.hidden = false; upBar.value = 0;
      await putWithProgress(`/api/v1/ota/bundle/${staged.id}`, b, (p) => { upBar.value = p; });
      upBar.value = 100;
      say(`Bundle ${staged.version} verified and staged.`, true);
    } catch (err) { say(err.message); }
    refresh();
  });
  const threshold = h("input", { type: "number", id: "ota-threshold", min: 0, max: 0.99, step: 0.05, value: 0.2 });
  const spread = h("input", { type: "number", id: "ota-spread", min: 0, max: 604800, step: 60, value: 0 });
  const act = (path, body, done) => async () => {
    try { const r = await post(path, body()); say(done(r), true); } catch (err) { say(err.message); }
    refresh();
  };
  const buttons = h("div", { class: "actions" },
    h("button", { type: "button", id: "ota-install", onclick: act("/api/v1/ota/install", () => ({}), (r) => r.message) }, "Install on this node"),
    h("button", { type: "button", id: "ota-rollback", onclick: act("/api/v1/ota/rollback", () => ({}), (r) => r.message) }, "Roll back"),
    h("label", {}, "Halt when a wave fails more than", threshold),
    h("label", {}, "Spread in a wave (s)", spread),
    h("button", { type: "button", id: "ota-rollout-start", onclick: act("/api/v1/ota/rollout",
      () => ({ action: "start", threshold: Number(threshold.value), spread_s: Number(spread.value) }),
      (r) => `Rollout ${r.rollout.id} started: ${r.rollout.waves.length} waves.`) }, "Start rollout"),
    h("button", { type: "button", id: "ota-rollout-stop", onclick: act("/api/v1/ota/rollout", () => ({ action: "stop" }),
      () => "Rollout stopped.") }, "Stop rollout"));
  const card = h("section", { class: "card", id: "updates" }, h("h2", {}, "Updates"), state, upload, buttons, msg);
  let timer = null;
  async function refresh() {
    if (!card.isConnected && timer !== null) { clearInterval(timer); timer = null; return; }
    try { renderOta(state, await get("/api/v1/ota")); } catch (err) { state.replaceChildren(h("p", { class: "message" }, err.message)); }
  }
  refresh();
  timer = setInterval(refresh, OTA_REFRESH_MS);
  return card;
}

async function putWithProgress(path, file, onProgress) {
  const token = await csrf();
  await new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open("PUT", path);
    x.setRequestHeader("X-CSRF-Token", token);
    x.setRequestHeader("Content-Type", "application/octet-stream");
    x.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(Math.round(100 * e.loaded / e.total)); };
    x.onload = () => {
      let body = {};
      try { body = JSON.parse(x.responseText); } catch { body = { error: x.responseText }; }
      if (x.status >= 200 && x.status < 300) resolve(body); else reject(new Error(body.error || `HTTP ${x.status}`));
    };
    x.onerror = () => reject(new Error("upload failed (connection)"));
    x.send(file);
  });
}

function renderOta(box, o) {
  const t = o.target;
  const slots = Object.entries(o.slots || {});
  const ro = o.rollout;
  box.replaceChildren(
    h("dl", { class: "kv" },
      h("dt", {}, "Running"), h("dd", { class: "mono", id: "ota-running" }, `${o.running.version} (serial ${o.running.serial})`),
      h("dt", {}, "Booted slot"), h("dd", {}, o.booted || "–"),
      h("dt", {}, "Update"), h("dd", { id: "ota-phase", "data-phase": o.phase }, o.phase + (o.why ? `: ${o.why}` : "")),
      h("dt", {}, "Staged bundle"), h("dd", { id: "ota-target" }, t ? [`${t.version} `,
        bar(Math.round(100 * t.have / t.chunks), "bundle on this node"), ` ${t.have}/${t.chunks} chunks`] : "–"),
      h("dt", {}, "Rollout"), h("dd", { id: "ota-rollout", "data-state": ro ? ro.state : "" },
        ro ? `${ro.v}: ${ro.state}, wave ${ro.wave + 1} of ${ro.waves.length}${ro.why ? ` (${ro.why})` : ""}` : "–")),
    slots.length ? h("div", { class: "table-wrap" }, h("table", { id: "ota-slots" },
      h("thead", {}, h("tr", {}, ["Slot", "State", "Boot status", "Version"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, slots.map(([name, s]) => h("tr", {},
        h("td", {}, name + (name === o.booted ? " (booted)" : "")), h("td", {}, s.state), h("td", {}, s.boot_status),
        h("td", { class: "mono" }, s.version || "–")))))) : h("p", { class: "empty" }, "No A/B slots on this node."),
    h("div", { class: "table-wrap" }, h("table", { id: "ota-nodes" },
      h("thead", {}, h("tr", {}, ["Node", "Phase", "Progress", "Running", "Reason"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, (o.nodes || []).map((n) => h("tr", { "data-node": n.node_id, "data-phase": n.phase || "" },
        h("td", { class: "mono", title: n.node_id }, n.node_id.slice(0, 12) + (n.self ? " (this node)" : "")),
        h("td", {}, n.phase || "–"), h("td", {}, bar(n.percent, "download")),
        h("td", { class: "mono" }, n.running || "–"), h("td", {}, n.why || "")))))));
}

async function load(box) {
  let fw;
  try { fw = await get("/api/v1/firmware"); } catch (err) { box.replaceChildren(h("p", { class: "message" }, err.message)); return; }
  const filter = h("input", { type: "search", id: "firmware-filter", placeholder: "Filter by name or licence", maxlength: 64 });
  const lists = h("div", {});
  const render = () => {
    const q = filter.value.trim().toLowerCase();
    lists.replaceChildren(...KINDS.map(([kind, title]) => {
      const rows = fw.components.filter((c) => c.kind === kind &&
        (!q || c.name.toLowerCase().includes(q) || c.licenses.join(" ").toLowerCase().includes(q)));
      return h("details", { class: "advanced", open: kind === "python" || !!q, "data-kind": kind },
        h("summary", {}, `${title} (${rows.length})`),
        h("div", { class: "table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, ["Name", "Version", "Licences"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows.map((c) => h("tr", {},
            h("td", { "data-label": "Name" }, c.name), h("td", { "data-label": "Version", class: "mono" }, c.version),
            h("td", { "data-label": "Licences" }, c.licenses.join(", ") || "–")))))));
    }));
  };
  filter.addEventListener("input", render);
  render();
  box.replaceChildren(
    h("dl", { class: "kv" },
      h("dt", {}, "Image"), h("dd", {}, fw.name || "–"),
      h("dt", {}, "Version"), h("dd", { class: "mono" }, fw.version || "–"),
      h("dt", {}, "Built"), h("dd", {}, fw.built || "–"),
      h("dt", {}, "Board"), h("dd", {}, fw.board || "–"),
      h("dt", {}, "Debian sources"), h("dd", { class: "mono" }, ...((fw.sources || []).map((s) => h("div", {}, s)))),
      h("dt", {}, "Components"), h("dd", {}, `${fw.counts.debian} Debian packages, ${fw.counts.python} Python distributions`),
      h("dt", {}, "Bill of materials"), h("dd", {}, h("a", { href: "/api/v1/firmware/sbom", download: "sbom.cdx.json" }, "sbom.cdx.json (CycloneDX)"))),
    filter, lists);
}
