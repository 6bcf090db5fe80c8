// The network as an SVG graph: one box per layer (levels top to bottom), edges labelled with
// the shape flowing along them; skip connections (residual adds, inception branches) curve
// around the layers they jump over.
import { h, shape, count } from "./common.js";

const W = 230, H = 42, GAP_X = 40, GAP_Y = 34, PAD = 24;

const FAMILY = [
  [/^conv/, "conv"], [/pool/, "pool"], [/^(linear)$/, "dense"], [/norm|lrn/, "norm"],
  [/^(add|concat)$/, "merge"], [/^(flatten|dropout)$/, "reshape"],
];
export const family = (type) => (FAMILY.find(([re]) => re.test(type)) || [null, "act"])[1];

const clip = (s, n) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/** Levels: the input at 0, each layer one below the deepest layer it reads. */
function layout(table, inputName) {
  const level = { [inputName]: 0 };
  const nodes = [{ name: inputName, type: "input", output_shape: table.input_shape, inputs: [] }, ...table.layers];
  for (const row of table.layers) level[row.name] = 1 + Math.max(...row.inputs.map((i) => level[i] ?? 0));
  const lanes = {};
  const pos = {};
  for (const n of nodes) {
    const l = level[n.name];
    const lane = (lanes[l] = (lanes[l] ?? -1) + 1);
    pos[n.name] = { x: PAD + lane * (W + GAP_X), y: PAD + l * (H + GAP_Y), level: l, lane };
  }
  const width = PAD * 2 + Math.max(...Object.values(lanes).map((k) => k + 1)) * (W + GAP_X) + 90;
  const height = PAD * 2 + (Math.max(...Object.values(level)) + 1) * (H + GAP_Y);
  return { nodes, pos, width, height };
}

/**
 * Draw `table` (the layer table) into `container`; `onSelect(name)` is called when a box is
 * clicked or activated with Enter/Space. Returns {select(name)} to highlight a box.
 */
export function drawGraph(container, table, inputName, title, onSelect) {
  const { nodes, pos, width, height } = layout(table, inputName);
  const shapeOf = Object.fromEntries(nodes.map((n) => [n.name, n.output_shape]));
  const svg = h("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, class: "graph", role: "group",
    "aria-labelledby": "graph-title graph-desc",
  });
  const merges = table.layers.filter((r) => r.inputs.length > 1).length;
  svg.append(
    h("title", { id: "graph-title" }, title),
    h("desc", { id: "graph-desc" },
      `${table.layers.length} layers from ${inputName} (${shape(table.input_shape)}) to ` +
      `${table.layers.at(-1).name} (${shape(table.layers.at(-1).output_shape)})` +
      (merges ? `, with ${merges} layers that merge several inputs (add or concat)` : "") +
      ". The layer table beside the drawing lists the same facts."),
  );
  const edges = h("g", { class: "edges" });
  const boxes = h("g", { class: "nodes" });
  svg.append(edges, boxes);

  for (const row of table.layers) {
    const to = pos[row.name];
    row.inputs.forEach((src, k) => {
      const from = pos[src];
      const label = shape(shapeOf[src]);
      const x1 = from.x + W / 2, y1 = from.y + H, x2 = to.x + W / 2, y2 = to.y;
      const skip = to.level - from.level > 1;
      let d, lx, ly;
      if (skip && from.lane === to.lane) {
        // bow out to the right of the column the edge jumps over
        const bx = Math.max(x1, x2) + W / 2 + 30 + 12 * k;
        d = `M${from.x + W},${from.y + H / 2} C${bx},${from.y + H / 2} ${bx},${to.y + H / 2} ${to.x + W},${to.y + H / 2}`;
        lx = bx - 8; ly = (from.y + to.y + H) / 2;
      } else {
        d = `M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2}`;
        lx = (x1 + x2) / 2 + 6; ly = (y1 + y2) / 2 + 4;
      }
      edges.append(
        h("path", { d, class: `edge${skip ? " skip" : ""}`, "marker-end": "url(#arrow)" },
          h("title", {}, `${src} → ${row.name}: ${label}`)),
        h("text", { x: lx, y: ly, class: "edge-label" }, label),
      );
    });
  }
  svg.prepend(h("defs", {}));
  svg.querySelector("defs").innerHTML =
    '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker>';

  const byName = {};
  for (const n of nodes) {
    const p = pos[n.name];
    const isInput = n.type === "input";
    const rf = n.receptive_field && n.receptive_field.size.length ? ` · RF ${shape(n.receptive_field.size)}` : "";
    const line2 = isInput ? shape(n.output_shape) : `${count(n.params)} params · ${count(n.macs)} MACs${rf}`;
    const label = isInput
      ? `input ${n.name}, ${shape(n.output_shape)}`
      : `${n.name}, ${n.type}, reads ${n.inputs.join(" and ")}, outputs ${shape(n.output_shape)}, ` +
        `${n.params} params, ${n.macs} multiply-adds${rf ? ", receptive field " + shape(n.receptive_field.size) : ""}`;
    const g = h("g", {
      class: `node ${isInput ? "input" : family(n.type)}`, transform: `translate(${p.x},${p.y})`,
      tabindex: isInput ? null : 0, role: isInput ? "img" : "button", "aria-label": label, "data-layer": n.name,
    },
      h("rect", { width: W, height: H, rx: 6 }),
      h("title", {}, label),
      h("text", { x: 8, y: 17, class: "name" }, clip(`${n.name} · ${isInput ? "input" : n.type}`, 34)),
      h("text", { x: 8, y: 33, class: "facts" }, line2),
    );
    if (!isInput) {
      const fire = () => onSelect && onSelect(n.name);
      g.addEventListener("click", fire);
      g.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fire(); } });
    }
    byName[n.name] = g;
    boxes.append(g);
  }
  container.replaceChildren(svg);
  return {
    select(name) {
      for (const g of Object.values(byName)) g.classList.remove("selected");
      if (byName[name]) byName[name].classList.add("selected");
    },
  };
}
