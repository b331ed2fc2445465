// Topology graph: a deterministic force layout drawn as SVG, links coloured by quality class.
// Reads from 1 to 200+ nodes: the ideal spacing has a floor (a big mesh grows the drawing instead of
// piling up) and a last pass pushes apart nodes closer than MIN_GAP of it; the view box has a minimum
// size (one node is not one giant circle); node radius, link width and label size are chosen in screen
// pixels for the space the drawing gets, so labels stay readable at any size. Beyond LABEL_ALL nodes
// only this node and its neighbours are named on the drawing (every node keeps its name in the
// tooltip); beyond COST_LABELS_MAX links the costs are left to the tooltips.
import { fmtRate, s, shortId } from "./dom.js";

const positions = new Map(); // node_id -> {x, y}, kept across redraws so the picture stays stable
const W = 1000, H = 640;
const MIN_GAP = 0.8, MIN_SPACING = 55, MIN_VIEW_W = 560, MIN_VIEW_H = 360, LABEL_ALL = 40, COST_LABELS_MAX = 60;
const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
const spacing = (n) => Math.max(MIN_SPACING, Math.sqrt((W * H) / Math.max(1, n)) * 0.55);
export const QUALITY_COLOURS = { excellent: "#0d9488", good: "#16a34a", fair: "#ca8a04", poor: "#f97316", bad: "#dc2626", unknown: "#9ca3af" };

function layout(nodes, links) {
  const n = nodes.length;
  const idx = new Map(nodes.map((nd, i) => [nd.node_id, i]));
  const p = nodes.map((nd, i) => {
    const old = positions.get(nd.node_id);
    if (old) return { x: old.x, y: old.y };
    if (nd.self) return { x: W / 2, y: H / 2 };
    const a = (2 * Math.PI * i) / Math.max(1, n);
    return { x: W / 2 + (W / 3) * Math.cos(a), y: H / 2 + (H / 3) * Math.sin(a) };
  });
  const edges = links.map((l) => [idx.get(l.a), idx.get(l.b)]).filter(([a, b]) => a !== undefined && b !== undefined);
  const k = spacing(n);
  let temp = W / 8;
  for (let it = 0; it < 250; it++) {
    const d = p.map(() => ({ x: 0, y: 0 }));
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        let dx = p[i].x - p[j].x, dy = p[i].y - p[j].y;
        let dist = Math.hypot(dx, dy);
        if (dist < 0.01) { dx = 0.01 * (i - j); dy = 0.01; dist = Math.hypot(dx, dy); }
        const f = (k * k) / dist;
        d[i].x += (dx / dist) * f; d[i].y += (dy / dist) * f;
        d[j].x -= (dx / dist) * f; d[j].y -= (dy / dist) * f;
      }
    }
    for (const [a, b] of edges) {
      const dx = p[a].x - p[b].x, dy = p[a].y - p[b].y;
      const dist = Math.max(0.01, Math.hypot(dx, dy));
      const f = (dist * dist) / k;
      d[a].x -= (dx / dist) * f; d[a].y -= (dy / dist) * f;
      d[b].x += (dx / dist) * f; d[b].y += (dy / dist) * f;
    }
    for (let i = 0; i < n; i++) {
      const len = Math.max(0.01, Math.hypot(d[i].x, d[i].y));
      p[i].x += (d[i].x / len) * Math.min(len, temp);
      p[i].y += (d[i].y / len) * Math.min(len, temp);
      // gentle pull to the centre keeps disconnected parts on screen
      p[i].x += (W / 2 - p[i].x) * 0.01; p[i].y += (H / 2 - p[i].y) * 0.01;
    }
    temp *= 0.985;
  }
  // no two nodes closer than MIN_GAP × spacing (a dense mesh would otherwise draw nodes on nodes)
  const minD = MIN_GAP * k;
  for (let pass = 0; pass < 40; pass++) {
    let moved = false;
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        let dx = p[i].x - p[j].x, dy = p[i].y - p[j].y;
        let dist = Math.hypot(dx, dy);
        if (dist >= minD) continue;
        if (dist < 0.01) { dx = 0.01 * (i - j + 0.5); dy = 0.01; dist = Math.hypot(dx, dy); }
        const push = (minD - dist) / 2 + 0.01;
        p[i].x += (dx / dist) * push; p[i].y += (dy / dist) * push;
        p[j].x -= (dx / dist) * push; p[j].y -= (dy / dist) * push;
        moved = true;
      }
    }
    if (!moved) break;
  }
  // use the width a screen offers: a drawing narrower than the canvas's shape is stretched sideways
  // (only ever stretched, so no two nodes come closer)
  if (n > 2) {
    const xs = p.map((q) => q.x), ys = p.map((q) => q.y);
    const w = Math.max(...xs) - Math.min(...xs), h = Math.max(...ys) - Math.min(...ys);
    const cx = (Math.max(...xs) + Math.min(...xs)) / 2, cy = (Math.max(...ys) + Math.min(...ys)) / 2;
    if (w > 1 && w / h < W / H) { const f = Math.min(1.8, (W / H) * (h / w)); p.forEach((q) => { q.x = cx + (q.x - cx) * f; }); }
    else if (h > 1 && w / h > 2 * (W / H)) { const f = Math.min(1.8, (w / h) / (2 * (W / H))); p.forEach((q) => { q.y = cy + (q.y - cy) * f; }); }
  }
  nodes.forEach((nd, i) => positions.set(nd.node_id, p[i]));
  return p;
}

export function drawTopology(topo) {
  const nodes = (topo && Array.isArray(topo.nodes) ? topo.nodes : []).slice().sort((a, b) =>
    a.self === b.self ? String(a.node_id).localeCompare(String(b.node_id)) : a.self ? -1 : 1);
  const links = topo && Array.isArray(topo.links) ? topo.links : [];
  const p = layout(nodes, links);
  const k = spacing(nodes.length);
  const selfId = (nodes.find((nd) => nd.self) || {}).node_id;
  const near = new Set(links.flatMap((l) => (l.a === selfId ? [l.b] : l.b === selfId ? [l.a] : [])));
  const named = (nd) => nodes.length <= LABEL_ALL || nd.self || near.has(nd.node_id);
  // fit the view box to the drawing with room for labels, never smaller than the minimum
  const xs = p.map((q) => q.x), ys = p.map((q) => q.y);
  const pad = 40 + 0.6 * k;
  let minX = Math.min(...xs, W / 2) - pad, maxX = Math.max(...xs, W / 2) + pad;
  let minY = Math.min(...ys, H / 2) - pad, maxY = Math.max(...ys, H / 2) + pad;
  if (maxX - minX < MIN_VIEW_W) { const c = (minX + maxX) / 2; minX = c - MIN_VIEW_W / 2; maxX = c + MIN_VIEW_W / 2; }
  if (maxY - minY < MIN_VIEW_H) { const c = (minY + maxY) / 2; minY = c - MIN_VIEW_H / 2; maxY = c + MIN_VIEW_H / 2; }
  // screen pixels per view-box unit, for the space the drawing gets (its card's width, at most 70 % of
  // the window's height, as the stylesheet lets it grow)
  const room = document.querySelector("main")?.clientWidth || 1000;
  const scale = Math.min((room - 60) / (maxX - minX), (0.7 * (window.innerHeight || 800)) / (maxY - minY));
  const px = (v) => v / Math.max(0.05, scale);
  const rPx = clamp(k * 0.3 * scale, 5, 15);
  const r = px(rPx), font = px(13), stroke = clamp(rPx / 3.5, 1.5, 4); // stroke: screen pixels (non-scaling)
  const svg = s("svg", { viewBox: `${minX} ${minY} ${maxX - minX} ${maxY - minY}`, class: nodes.length <= 3 ? "topology sparse" : "topology",
    role: "img", "aria-label": `mesh topology: ${nodes.length} nodes, ${links.length} links` });
  const at = new Map(nodes.map((nd, i) => [nd.node_id, p[i]]));
  const gl = s("g", { class: "links" });
  for (const l of links) {
    const a = at.get(l.a), b = at.get(l.b);
    if (!a || !b) continue;
    const q = QUALITY_COLOURS[l.quality] ? l.quality : "unknown";
    const line = s("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y, stroke: QUALITY_COLOURS[q],
      "stroke-width": stroke, "vector-effect": "non-scaling-stroke", "stroke-linecap": "round", class: `link q-${q}`, "data-quality": q });
    const rate = typeof l.throughput_bps === "number" ? `, ${fmtRate(l.throughput_bps)}` : "";
    line.append(s("title", {}, `${shortId(l.a)} ↔ ${shortId(l.b)}: ${q}, cost ${l.cost ?? "?"}${rate}`));
    gl.append(line);
    if (typeof l.cost === "number" && links.length <= COST_LABELS_MAX) {
      gl.append(s("text", { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 6, class: "cost", "text-anchor": "middle",
        "font-size": font * 0.85, "stroke-width": px(3) }, String(l.cost)));
    }
  }
  const gn = s("g", { class: "nodes" });
  // labels go below their node, else above, right or left: the first place free of labels already set
  const placed = [];
  const charW = font * 0.62;
  const labelAt = (x, y, rr, text) => {
    const w = text.length * charW, hgt = font;
    const options = [[0, rr + font + 2, "middle"], [0, -rr - 5, "middle"], [rr + 5, font / 3, "start"], [-rr - 5, font / 3, "end"]];
    const box = ([dx, dy, anchor]) => {
      const left = anchor === "middle" ? x + dx - w / 2 : anchor === "start" ? x + dx : x + dx - w;
      return [left, y + dy - hgt * 0.8, left + w, y + dy + hgt * 0.2];
    };
    const free = (b) => !placed.some((o) => b[0] < o[2] && o[0] < b[2] && b[1] < o[3] && o[1] < b[3]);
    const pick = options.find((o) => free(box(o))) || options[0];
    placed.push(box(pick));
    return pick;
  };
  const order = nodes.map((nd, i) => i).sort((a, b) => (nodes[b].self ? 1 : 0) - (nodes[a].self ? 1 : 0));
  const labelOf = new Map();
  for (const i of order) {
    const nd = nodes[i];
    if (!named(nd)) continue;
    const rr = nd.self ? r * 1.3 : r;
    const text = nd.name || shortId(nd.node_id);
    labelOf.set(i, [text, labelAt(p[i].x, p[i].y, rr, text)]);
  }
  nodes.forEach((nd, i) => {
    const g = s("g", { class: nd.self ? "node self" : "node", "data-node": nd.node_id,
      transform: `translate(${p[i].x},${p[i].y})` });
    g.append(s("circle", { r: nd.self ? r * 1.3 : r }));
    const lab = labelOf.get(i);
    if (lab) {
      const [text, [dx, dy, anchor]] = lab;
      g.append(s("text", { x: dx, y: dy, "text-anchor": anchor, class: "label", "font-size": font, "stroke-width": px(4) }, text));
    }
    const about = [nd.version && `version ${nd.version}`, nd.health && `health ${nd.health}`].filter(Boolean).join(", ");
    g.append(s("title", {}, `${nd.name || ""} ${nd.node_id}\n${nd.mesh_addr || ""}${about ? `\n${about}` : ""}`));
    gn.append(g);
  });
  svg.append(gl, gn);
  return svg;
}
