// DOM helpers. Text always goes through textContent (never innerHTML), so node data cannot inject markup.
const SVG_NS = "http://www.w3.org/2000/svg";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  return fill(el, attrs, children);
}

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  return fill(el, attrs, children);
}

function fill(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function fmtDuration(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds)) return "–";
  let t = Math.floor(seconds);
  const d = Math.floor(t / 86400); t -= d * 86400;
  const hh = Math.floor(t / 3600); t -= hh * 3600;
  const m = Math.floor(t / 60); const sec = t - m * 60;
  if (d) return `${d}d ${hh}h ${m}m`;
  if (hh) return `${hh}h ${m}m ${sec}s`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

export function fmtBytes(n) {
  if (typeof n !== "number") return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtRate(bps) {
  if (typeof bps !== "number") return "–";
  if (bps >= 1e9) return `${(bps / 1e9).toFixed(1)} Gbit/s`;
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)} Mbit/s`;
  if (bps >= 1e3) return `${(bps / 1e3).toFixed(0)} kbit/s`;
  return `${bps.toFixed(0)} bit/s`;
}

export const fmtNum = (v, digits = 1, unit = "") =>
  typeof v === "number" && isFinite(v) ? `${v.toFixed(digits)}${unit}` : "–";

export const shortId = (id) => (typeof id === "string" ? id.slice(0, 8) : "?");

export function fmtTime(unix) {
  if (typeof unix !== "number") return "–";
  const d = new Date(unix * 1000);
  return d.toLocaleString(undefined, { hour12: false });
}

export function qualityBadge(q) {
  const cls = ["excellent", "good", "fair", "poor", "bad"].includes(q) ? q : "unknown";
  return h("span", { class: `badge q-${cls}` }, q || "unknown");
}
