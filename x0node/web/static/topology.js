// Topology graph: a deterministic force layout drawn as SVG, links coloured by quality class.
import { fmtRate, s, shortId } from "./dom.js";

const positions = new Map(); // node_id -> {x, y}, kept across redraws so the picture stays stable
const W = 1000, H = 640;
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
  const k = Math.sqrt((W * H) / Math.max(1, n)) * 0.55;
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
  nodes.forEach((nd, i) => positions.set(nd.node_id, p[i]));
  return p;
}

export function drawTopology(topo) {
  const nodes = (topo && Array.isArray(topo.nodes) ? topo.nodes : []).slice().sort((a, b) =>
    a.self === b.self ? String(a.node_id).localeCompare(String(b.node_id)) : a.self ? -1 : 1);
  const links = topo && Array.isArray(topo.links) ? topo.links : [];
  const p = layout(nodes, links);
  // fit the view box to the drawing with room for labels
  const xs = p.map((q) => q.x), ys = p.map((q) => q.y);
  const pad = 70;
  const minX = Math.min(...xs, W / 2) - pad, maxX = Math.max(...xs, W / 2) + pad;
  const minY = Math.min(...ys, H / 2) - pad, maxY = Math.max(...ys, H / 2) + pad;
  const svg = s("svg", { viewBox: `${minX} ${minY} ${maxX - minX} ${maxY - minY}`, class: "topology",
    role: "img", "aria-label": `mesh topology: ${nodes.length} nodes, ${links.length} links` });
  const at = new Map(nodes.map((nd, i) => [nd.node_id, p[i]]));
  const gl = s("g", { class: "links" });
  for (const l of links) {
    const a = at.get(l.a), b = at.get(l.b);
    if (!a || !b) continue;
    const q = QUALITY_COLOURS[l.quality] ? l.quality : "unknown";
    const line = s("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y, stroke: QUALITY_COLOURS[q],
      "stroke-width": 5, "stroke-linecap": "round", class: `link q-${q}`, "data-quality": q });
    const rate = typeof l.throughput_bps === "number" ? `, ${fmtRate(l.throughput_bps)}` : "";
    line.append(s("title", {}, `${shortId(l.a)} ↔ ${shortId(l.b)}: ${q}, cost ${l.cost ?? "?"}${rate}`));
    gl.append(line);
    if (typeof l.cost === "number") {
      gl.append(s("text", { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 6, class: "cost", "text-anchor": "middle" }, String(l.cost)));
    }
  }
  const gn = s("g", { class: "nodes" });
  nodes.forEach((nd, i) => {
    const g = s("g", { class: nd.self ? "node self" : "node", "data-node": nd.node_id,
      transform: `translate(${p[i].x},${p[i].y})` });
    g.append(s("circle", { r: nd.self ? 22 : 17 }));
    g.append(s("text", { y: nd.self ? 42 : 36, "text-anchor": "middle", class: "label" }, nd.name || shortId(nd.node_id)));
    g.append(s("title", {}, `${nd.name || ""} ${nd.node_id}\n${nd.mesh_addr || ""}`));
    gn.append(g);
  });
  svg.append(gl, gn);
  return svg;
}
