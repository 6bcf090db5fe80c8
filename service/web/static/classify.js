// Classify dropped or picked images, then look inside: feature maps, receptive fields, the
// flattened vector.
import { $, api, base, h, shape, versionData, showError, Problem, withToken } from "./common.js";
import { mapCanvas, rgbCanvas, range, parseNpy, scaleFor, colour } from "./maps.js";

const d = versionData();
const inputName = d.spec.input.name;
const rows = Object.fromEntries(d.table.layers.map((r) => [r.name, r]));
const specOf = Object.fromEntries(d.spec.layers.map((l) => [l.name, l]));
const MAX_MAPS = 64;
let files = [];
const cache = new Map();

function form(file) {
  const f = new FormData();
  f.append("image", file, file.name || "image");
  return f;
}

/** A layer's output (or the preprocessed input) for one image, as {shape, data}. */
async function activations(index, layer) {
  const key = `${index}/${layer}`;
  if (!cache.has(key)) {
    cache.set(key, (async () => {
      const resp = await fetch(`${base(d)}/activations?layer=${encodeURIComponent(layer)}`, {
        method: "POST", body: form(files[index]), headers: withToken({ Accept: "application/x-npy" }),
      });
      if (!resp.ok) throw new Problem(resp.status, await resp.json());
      return parseNpy(await resp.arrayBuffer());
    })());
  }
  return cache.get(key);
}

/** The input as the model saw it: grey for one channel, colour for three. */
function seenCanvas(t, px) {
  const [c, hgt, wid] = t.shape;
  const label = `the preprocessed input, ${shape(t.shape)}`;
  if (c === 3) return rgbCanvas(t.data, hgt, wid, px, label);
  const [lo, hi] = range(t.data.subarray(0, hgt * wid));
  return mapCanvas(t.data, 0, hgt, wid, lo, hi, px, label, false); // grey, as a photo
}

async function classify() {
  if (!files.length) return;
  const results = $("#results");
  results.replaceChildren(h("p", { class: "muted" }, "classifying…"));
  const body = new FormData();
  files.forEach((f) => body.append("image", f, f.name || "image"));
  const k = Math.max(1, Number($("#topk").value) || 5);
  let doc;
  try {
    doc = await api(`${base(d)}/predict?top_k=${k}`, { method: "POST", body });
  } catch (err) {
    showError(results, err);
    return;
  }
  const items = await Promise.all(doc.predictions.map(async (p, i) => {
    const original = h("img", { src: URL.createObjectURL(files[i]), alt: `image ${i + 1}: ${files[i].name}`, style: "max-width: 96px; max-height: 96px" });
    let seen = h("span", {});
    if (d.spec.input.shape.length === 3) {
      try {
        const t = await activations(i, inputName);
        seen = seenCanvas(t, scaleFor(t.shape[2], 96));
      } catch (err) { seen = h("span", { class: "problem" }, err.message); }
    }
    const bars = h("ol", { class: "bars", "aria-label": `top ${p.top.length} classes for ${files[i].name}` },
      p.top.map((c) => h("li", { class: "class" },
        h("span", { class: "label" }, c.label),
        h("span", { class: "track" }, h("span", { class: "fill", style: `display:block; width:${(100 * c.probability).toFixed(1)}%` })),
        h("span", { class: "num" }, `${(100 * c.probability).toFixed(1)}%`))));
    return h("div", { class: "result", "data-top": p.top[0].label },
      h("figure", { style: "margin:0; display:flex; gap:8px; align-items:center" }, original, seen,
        h("figcaption", { class: "muted" }, files[i].name, h("br"), "as given · as the model saw it")),
      h("div", {}, h("p", {}, "Top class: ", h("strong", { class: "top1" }, p.top[0].label)), bars));
  }));
  results.replaceChildren(h("p", {}, `${doc.model} v${doc.version}`), ...items);
  const pick = $("#inside-image");
  pick.replaceChildren(...files.map((f, i) => h("option", { value: i }, `${i + 1}: ${f.name}`)));
  $("#inside").hidden = false;
  await Promise.all([inside(), vector()]);
}

// ---------------------------------------------------------------- receptive fields

const ints = (v, n, dflt) => (v === undefined || v === null ? Array(n).fill(dflt) : typeof v === "number" ? Array(n).fill(v) : v);

/** The window geometry of a layer on its input: kernel, stride, padding, dilation per axis. */
function geometry(name, n) {
  const l = specOf[name];
  if (!l || !("kernel_size" in l)) return null;
  const k = ints(l.kernel_size, n, 1);
  const isPool = /pool/.test(l.type);
  const s = ints(l.stride, n, isPool ? null : 1).map((v, i) => (v === null ? k[i] : v));
  const dil = ints(l.dilation, n, 1);
  let p;
  if (l.padding === "same") p = k.map((kk, i) => Math.floor(((kk - 1) * dil[i]) / 2));
  else if (l.padding === "valid") p = Array(n).fill(0);
  else p = ints(l.padding, n, 0);
  return { k, s, p, d: dil };
}

/** Input coordinates of the centre of unit 0 of `name`, following first inputs back to the image. */
function start(name, n) {
  if (name === inputName || !rows[name]) return Array(n).fill(0);
  const row = rows[name];
  const before = start(row.inputs[0], n);
  const g = geometry(name, n);
  if (!g) return before;
  const jump = (rows[row.inputs[0]] || { receptive_field: { stride: Array(n).fill(1) } }).receptive_field.stride;
  return before.map((b, i) => b + ((g.k[i] - 1) / 2 * g.d[i] - g.p[i]) * (jump[i] || 1));
}

/** Which maps of its first input a unit at channel c reads, and the window [y0, y1, x0, x1] in them. */
function reads(name, c, y, x) {
  const row = rows[name];
  const inC = row.input_shapes[0][0];
  const g = geometry(name, 2);
  let channels = [c, c + 1];
  if (row.weight_shapes.weight && /^conv/.test(row.type)) {
    const per = row.weight_shapes.weight[1];
    const groups = inC / per;
    const grp = Math.floor(c / (row.output_shape[0] / groups));
    channels = [grp * per, grp * per + per];
  } else if (row.type === "concat" || row.type === "flatten" || row.output_shape.length < 3) {
    channels = [0, inC];
  }
  if (!g) return { channels, win: [y, y, x, x] };
  const y0 = y * g.s[0] - g.p[0], x0 = x * g.s[1] - g.p[1];
  return { channels, win: [y0, y0 + (g.k[0] - 1) * g.d[0], x0, x0 + (g.k[1] - 1) * g.d[1]] };
}

function place(box, [y0, y1, x0, x1], hgt, wid, px) {
  const cy0 = Math.max(0, y0), cy1 = Math.min(hgt - 1, y1), cx0 = Math.max(0, x0), cx1 = Math.min(wid - 1, x1);
  Object.assign(box.style, { top: `${cy0 * px}px`, left: `${cx0 * px + 2}px`, height: `${(cy1 - cy0 + 1) * px + 4}px`, width: `${(cx1 - cx0 + 1) * px}px` });
}

// ---------------------------------------------------------------- feature maps

function grid(container, t, label, px, onUnit) {
  const [c, ...sp] = t.shape;
  const hgt = sp.length >= 2 ? sp[sp.length - 2] : 1;
  const wid = sp.length >= 1 ? sp[sp.length - 1] : 1;
  const plane = t.data.length / c;
  const [lo, hi] = range(t.data);
  const shown = Math.min(c, MAX_MAPS);
  const cells = [];
  for (let i = 0; i < shown; i++) {
    const canvas = mapCanvas(t.data, i * plane, hgt, wid, lo, hi, px, `${label} map ${i}`);
    const win = h("div", { class: "window", "aria-hidden": "true" });
    const cell = h("div", { class: "map", "data-channel": i }, canvas, win, h("span", {}, `${i}`));
    if (onUnit) {
      canvas.tabIndex = 0;
      let cur = [0, 0];
      const fire = (y, x) => { cur = [y, x]; onUnit(i, y, x, t.data[i * plane + y * wid + x]); };
      canvas.addEventListener("mousemove", (e) => {
        const r = canvas.getBoundingClientRect();
        fire(Math.min(hgt - 1, Math.floor((e.clientY - r.top) / px)), Math.min(wid - 1, Math.floor((e.clientX - r.left) / px)));
      });
      canvas.addEventListener("focus", () => fire(...cur));
      canvas.addEventListener("keydown", (e) => {
        const [y, x] = cur;
        const move = { ArrowUp: [y - 1, x], ArrowDown: [y + 1, x], ArrowLeft: [y, x - 1], ArrowRight: [y, x + 1] }[e.key];
        if (!move) return;
        e.preventDefault();
        fire(Math.max(0, Math.min(hgt - 1, move[0])), Math.max(0, Math.min(wid - 1, move[1])));
      });
    }
    cells.push(cell);
  }
  container.replaceChildren(...cells);
  if (c > shown) container.append(h("p", { class: "muted" }, `first ${shown} of ${c} maps`));
  return { hgt, wid };
}

let seenBox = null;

async function inside() {
  const i = Number($("#inside-image").value || 0);
  const name = $("#inside-layer").value;
  const row = rows[name];
  const source = row.inputs[0];
  const status = $("#unit");
  try {
    const [seen, t, src] = await Promise.all([activations(i, inputName), activations(i, name), activations(i, source)]);
    const is2d = seen.shape.length === 3;
    const seenPx = is2d ? scaleFor(seen.shape[2], 224) : 4;
    seenBox = h("div", { class: "window", style: "display:block", "aria-hidden": "true", hidden: true });
    $("#seen").replaceChildren(is2d ? seenCanvas(seen, seenPx) : h("p", {}, shape(seen.shape)), seenBox);
    $("#layer-title").textContent = `${name}: ${row.type}, ${shape(row.output_shape)}`;
    $("#source-title").textContent = `Maps it reads: ${source} (${shape(src.shape)})`;
    const spatial = t.shape.length === 3;
    const px = spatial ? scaleFor(t.shape[2], 72) : 6;
    const srcPx = src.shape.length === 3 ? scaleFor(src.shape[2], 72) : 6;
    const srcGrid = $("#source-maps");
    grid(srcGrid, src, source, srcPx, null);
    const rf = row.receptive_field;
    const s0 = spatial && is2d ? start(name, 2) : null;
    grid($("#layer-maps"), t, name, px, (c, y, x, v) => {
      let text = `${name} map ${c}, unit (${y}, ${x}) = ${v.toPrecision(3)}`;
      if (s0 && rf.size.length === 2) {
        const win = [0, 1].map((a) => { const ctr = s0[a] + [y, x][a] * rf.stride[a]; return [Math.round(ctr - (rf.size[a] - 1) / 2), Math.round(ctr + (rf.size[a] - 1) / 2)]; });
        place(seenBox, [win[0][0], win[0][1], win[1][0], win[1][1]], seen.shape[1], seen.shape[2], seenPx);
        seenBox.hidden = false;
        text += `; it sees input rows ${Math.max(0, win[0][0])}–${Math.min(seen.shape[1] - 1, win[0][1])}, columns ${Math.max(0, win[1][0])}–${Math.min(seen.shape[2] - 1, win[1][1])} (receptive field ${shape(rf.size)})`;
      }
      if (src.shape.length === 3 && spatial) {
        const r = reads(name, c, y, x);
        for (const cell of srcGrid.querySelectorAll(".map")) {
          const ch = Number(cell.dataset.channel);
          const on = ch >= r.channels[0] && ch < r.channels[1];
          cell.classList.toggle("reads", on);
          if (on) place(cell.querySelector(".window"), r.win, src.shape[1], src.shape[2], srcPx);
        }
        const n = r.channels[1] - r.channels[0];
        text += `; reads ${n === 1 ? `map ${r.channels[0]}` : `maps ${r.channels[0]}–${r.channels[1] - 1}`} of ${source}`;
      }
      status.textContent = text;
    });
  } catch (err) {
    showError(status, err);
  }
}

async function vector() {
  const dense = d.table.layers.find((r) => r.type === "linear");
  const note = $("#vector-note");
  const box = $("#vector");
  if (!dense) { note.textContent = "This network has no dense (linear) layer."; box.replaceChildren(); return; }
  const i = Number($("#inside-image").value || 0);
  const srcName = dense.inputs[0];
  // back through value-by-value layers (dropout, activations) to the flatten, if any
  let src = rows[srcName];
  while (src && src.type !== "flatten" && src.inputs.length === 1 && rows[src.inputs[0]] &&
         shape(rows[src.inputs[0]].output_shape) === shape(src.output_shape)) src = rows[src.inputs[0]];
  const before = src && src.type === "flatten" ? src.input_shapes[0] : null;
  try {
    const t = await activations(i, srcName);
    const n = t.data.length;
    const seg = before && before.length > 1 ? before.slice(1).reduce((a, b) => a * b, 1) : n;
    note.textContent = `${dense.name} reads ${n} values from ${srcName}` +
      (!before ? "." : seg === 1
        ? `: ${src.name} turned the ${before[0]} maps of ${shape(before.slice(1))} into ${n} values, one per map, so each of ${dense.name}'s ${dense.output_shape[0]} units has ${n} weights.`
        : `: ${src.name} laid the ${before[0]} maps of ${shape(before.slice(1))} out one after another (map 0's ${seg} values, then map 1's, …), so each of ${dense.name}'s ${dense.output_shape[0]} units has ${n} weights.`);
    box.setAttribute("aria-label", note.textContent);
    const [lo, hi] = range(t.data);
    const shown = Math.min(n, 4096);
    const spans = [];
    for (let k = 0; k < shown; k++) {
      const [r, g, b] = colour(t.data[k], lo, hi);
      const c = Math.floor(k / seg), rest = k % seg;
      const where = before && before.length === 3 ? `map ${c}, row ${Math.floor(rest / before[2])}, column ${rest % before[2]}` : `value ${k}`;
      spans.push(h("span", { class: k && k % seg === 0 ? "boundary" : null, style: `background: rgb(${r},${g},${b})`, title: `${k}: ${where} = ${t.data[k].toPrecision(3)}` }));
    }
    box.replaceChildren(...spans);
  } catch (err) {
    showError(note, err);
  }
}

function take(list) {
  files = [...list].filter((f) => f.type.startsWith("image/") || /\.(png|jpe?g|bmp|gif|tiff?|webp)$/i.test(f.name));
  cache.clear();
  classify();
}

$("#images").addEventListener("change", (e) => take(e.target.files));
$("#topk").addEventListener("change", classify);
$("#classify").addEventListener("submit", (e) => { e.preventDefault(); classify(); });
const drop = $("#drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); take(e.dataTransfer.files); });
$("#inside-layer").addEventListener("change", inside);
$("#inside-image").addEventListener("change", () => { inside(); vector(); });
const firstConv = d.table.layers.find((r) => /^conv/.test(r.type));
if (firstConv) $("#inside-layer").value = firstConv.name;
