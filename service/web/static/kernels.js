// Kernels of a conv layer: each filter as one tile per input channel it reads.
import { $, api, base, h, shape, versionData, showError } from "./common.js";
import { mapCanvas, range, colour, flat2d } from "./maps.js";

const d = versionData();
const rows = Object.fromEntries(d.table.layers.map((r) => [r.name, r]));
const select = $("#layer");
const limit = $("#limit");
const out = $("#kernels");

/** A kernel slice (1-D, 2-D or 3-D) as 2-D rows: 1-D → one row, 3-D → depth slices side by side. */
function as2d(k) {
  if (typeof k[0] === "number") return [k];
  if (typeof k[0][0] === "number") return k;
  return k[0].map((_, y) => k.flatMap((slice) => [...slice[y], NaN]).slice(0, -1));
}

async function show() {
  const name = select.value;
  const row = rows[name];
  const params = new URLSearchParams(location.search);
  params.set("layer", name);
  history.replaceState(null, "", `?${params}`);
  $("#kernel-explain").textContent = row.explain;
  const n = Math.max(1, Number(limit.value) || 32);
  let doc;
  try {
    doc = await api(`${base(d)}/layers/${encodeURIComponent(name)}/weights?max_filters=${n}`);
  } catch (err) {
    showError(out, err);
    return;
  }
  const w = doc.arrays.weight;
  const [outC, perGroup, ...kernel] = w.shape;
  const inC = row.input_shapes[0][0];
  const groups = inC / perGroup;
  const perFilterGroup = outC / groups;
  const [lo, hi] = range(w.data);
  const m = Math.max(-lo, hi);
  const pointwise = kernel.every((k) => k === 1);
  const note = h("p", {},
    (groups > 1 ? `groups=${groups}: filters ${perFilterGroup} at a time read one group of ${perGroup} of the ${inC} input maps, so each has ${perGroup} tiles. `
      : `Each filter has ${inC} tiles, one per input map. `) +
    (w.truncated ? `Showing the first ${w.data.length} of ${outC} filters.` : ""));
  const body = [note];
  if (pointwise) {
    body.push(h("p", {}, `1×1 kernels: filter f's output map = Σ weight[f, c] × input map c, pixel by pixel — a mixing of channels. Rows are filters (output maps), columns the input maps they mix.`));
    const table = h("table", { class: "mix", "aria-label": `mixing matrix, ${w.data.length} filters by ${perGroup} input maps` });
    w.data.forEach((f, i) => {
      const g = Math.floor(i / perFilterGroup);
      const tr = h("tr", { class: "filter", "data-filter": i, "aria-label": `filter ${i} reads maps ${g * perGroup}–${(g + 1) * perGroup - 1}` });
      f.forEach((ch, c) => {
        const v = as2d(ch)[0][0];
        const [r, gg, b] = colour(v, -m, m);
        tr.append(h("td", { class: "tile", style: `background: rgb(${r},${gg},${b})`, title: `filter ${i} × input map ${g * perGroup + c}: ${v.toFixed(4)}` }));
      });
      table.append(tr);
    });
    body.push(table);
  } else {
    const px = Math.max(4, Math.min(12, Math.floor(48 / Math.max(...kernel))));
    w.data.forEach((f, i) => {
      const g = Math.floor(i / perFilterGroup);
      const first = g * perGroup;
      const tiles = f.map((ch, c) => {
        const t = flat2d(as2d(ch));
        const c2 = mapCanvas(t.data, 0, t.hgt, t.wid, -m, m, px, `filter ${i}, input map ${first + c}`);
        c2.classList.add("tile");
        c2.title = `filter ${i} · input map ${first + c}`;
        return c2;
      });
      body.push(h("div", {
        class: "filter", "data-filter": i, role: "group",
        "aria-label": `filter ${i}: ${perGroup} kernels of ${shape(kernel)}, one per input map ${first}–${first + perGroup - 1}`,
      }, h("span", {}, `filter ${i}` + (groups > 1 ? ` · maps ${first}–${first + perGroup - 1}` : "")), h("div", { class: "group" }, tiles)));
    });
  }
  out.replaceChildren(...body);
}

if (select) {
  const wanted = new URLSearchParams(location.search).get("layer");
  if (wanted && rows[wanted]) select.value = wanted;
  select.addEventListener("change", show);
  limit.addEventListener("change", show);
  show();
}
