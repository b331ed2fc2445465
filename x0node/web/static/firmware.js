// The Firmware page (read only): the image this device runs and its bill of materials, from
// GET /api/v1/firmware; the full CycloneDX document is offered for download (/api/v1/firmware/sbom).
import { get } from "./api.js";
import { h } from "./dom.js";

const KINDS = [["debian", "Debian packages"], ["python", "Python distributions"]];

export function firmwareView() {
  const box = h("div", {}, h("p", { class: "empty" }, "Loading…"));
  load(box);
  return [h("section", { class: "card", id: "firmware" }, h("h2", {}, "Firmware"), box)];
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
