// Inspect as you type: the spec is checked by POST /v1/inspect after each pause in typing;
// problems are listed with the line of the layer they name. The what-if scales width and
// resolution and inspects the result.
import { $, api, h, shape, count, grouped, Problem } from "./common.js";

const text = $("#spec");
const status = $("#status");
const errors = $("#errors");
const examples = JSON.parse($("#examples").textContent);
let last = null; // {spec, table} of the last valid spec
let seq = 0;

/** The 1-based line holding `"name": "<layer>"`, else null. */
function lineOf(layer) {
  if (!layer) return null;
  const esc = layer.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const m = new RegExp(`"name"\\s*:\\s*"${esc}"`).exec(text.value);
  return m ? text.value.slice(0, m.index).split("\n").length : null;
}

function jump(line) {
  const lines = text.value.split("\n");
  const startPos = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  text.focus();
  text.setSelectionRange(startPos, startPos + lines[line - 1].length);
  const lh = parseFloat(getComputedStyle(text).lineHeight) || 19;
  text.scrollTop = Math.max(0, (line - 4) * lh);
}

function problem(message, line) {
  return h("p", { class: "problem" }, line ? `line ${line}: ` : "", message,
    line ? h("button", { type: "button", class: "secondary", onclick: () => jump(line), "aria-label": `go to line ${line}` }, "go to") : null);
}

function tableOf(t) {
  return h("table", { class: "data", id: "inspect-table" },
    h("caption", {}, `Input ${shape(t.input_shape)} · ${grouped(t.totals.params)} params · ${grouped(t.totals.macs)} MACs per image`),
    h("thead", {}, h("tr", {}, ["Layer", "Type", "Output", "Params", "MACs", "RF", "What it does"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, t.layers.map((r) => h("tr", {},
      h("th", { scope: "row" }, r.name), h("td", {}, r.type), h("td", {}, shape(r.output_shape)),
      h("td", { class: "num" }, grouped(r.params)), h("td", { class: "num" }, grouped(r.macs)),
      h("td", {}, r.receptive_field.size.length ? shape(r.receptive_field.size) : "–"),
      h("td", { class: "explain" }, r.explain)))));
}

async function inspect(spec) {
  return api("/v1/inspect", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(spec) });
}

async function check() {
  const mine = ++seq;
  let spec;
  try {
    spec = JSON.parse(text.value);
  } catch (err) {
    const pos = /position (\d+)/.exec(err.message);
    const line = pos ? text.value.slice(0, Number(pos[1])).split("\n").length : null;
    text.setAttribute("aria-invalid", "true");
    status.textContent = "Not valid JSON.";
    errors.replaceChildren(problem(err.message, line));
    return;
  }
  try {
    const table = await inspect(spec);
    if (mine !== seq) return;
    text.removeAttribute("aria-invalid");
    status.replaceChildren(h("span", { class: "ok" }, `Valid: ${table.layers.length} layers, ${grouped(table.totals.params)} params, ${grouped(table.totals.macs)} MACs per image.`));
    errors.replaceChildren();
    $("#table").replaceChildren(tableOf(table));
    last = { spec, table };
    if (!$("#resolution").value) $("#resolution").value = table.input_shape.at(-1);
    whatIf();
  } catch (err) {
    if (mine !== seq) return;
    text.setAttribute("aria-invalid", "true");
    const stale = $("#inspect-table caption");
    if (stale && !stale.textContent.startsWith("(last valid spec)")) stale.prepend("(last valid spec) ");
    if (err instanceof Problem && Array.isArray(err.doc.errors)) {
      status.textContent = `${err.doc.errors.length} problem${err.doc.errors.length === 1 ? "" : "s"} found.`;
      errors.replaceChildren(...err.doc.errors.map((e) =>
        problem((e.layer ? `${e.layer}${e.field ? "." + e.field : ""}: ` : e.field ? `${e.field}: ` : "") + e.message, lineOf(e.layer))));
    } else {
      status.textContent = "The server could not check the spec.";
      errors.replaceChildren(problem(err.message, null));
    }
  }
}

let timer = null;
text.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, 250); });

// ---------------------------------------------------------------- what-if

const isConv = (t) => /^conv/.test(t);
const prod = (a) => a.reduce((x, y) => x * y, 1);

/** The spec with every width scaled by m and the input resized to r×r (2-D inputs). */
async function scaled(spec, table, m, r) {
  const s = structuredClone(spec);
  const inShape = s.input.shape;
  if (inShape.length === 3 && r) {
    const [oh, ow] = inShape.slice(1);
    s.input.shape = [inShape[0], r, Math.round((r * ow) / oh)];
    const pre = s.input.preprocess;
    if (pre && pre.resize) pre.resize = s.input.shape.slice(1);
    if (pre && pre.center_crop) {
      if (pre.resize_shorter) pre.resize_shorter = Math.round((pre.resize_shorter * r) / pre.center_crop[0]);
      pre.center_crop = s.input.shape.slice(1);
    }
  }
  const byName = Object.fromEntries(s.layers.map((l) => [l.name, l]));
  const rows = table.layers;
  const weighted = rows.filter((row) => isConv(row.type) || row.type === "linear");
  const keep = s.labels ? weighted.at(-1)?.name : null; // the classifier keeps one output per class
  const ch = { [s.input.name]: s.input.shape[0] };
  const scale = (n, g = 1) => Math.max(g, Math.round((n * m) / g) * g);
  for (const row of rows) {
    const l = byName[row.name];
    const src = row.inputs[0];
    if (isConv(row.type)) {
      const inNew = ch[src];
      const g = l.groups || 1;
      if (g > 1 && g === l.in_channels) { // depthwise: one group per channel
        l.out_channels = inNew * (l.out_channels / l.in_channels);
        l.groups = inNew;
      } else if (row.name !== keep) {
        l.out_channels = scale(l.out_channels, g);
      }
      l.in_channels = inNew;
      ch[row.name] = l.out_channels;
    } else if (row.type === "linear") {
      if (!rows.some((q) => q.name === src && q.type === "linear") && !["relu", "dropout", "relu6", "sigmoid", "tanh", "leaky_relu"].includes(rows.find((q) => q.name === src)?.type)) {
        // what reaches it depends on the resolution: ask the server for the prefix's output
        const prefix = { ...s, labels: undefined, output: src, layers: s.layers.slice(0, s.layers.indexOf(l)) };
        const t = await inspect(prefix);
        l.in_features = prod(t.layers.find((q) => q.name === src).output_shape);
      } else {
        l.in_features = ch[src];
      }
      if (row.name !== keep) l.out_features = scale(l.out_features);
      ch[row.name] = l.out_features;
    } else if (/^batchnorm/.test(row.type)) {
      l.num_features = ch[src];
      ch[row.name] = ch[src];
    } else if (row.type === "concat") {
      ch[row.name] = row.inputs.reduce((n, i) => n + ch[i], 0);
    } else if (row.type === "flatten") {
      ch[row.name] = null; // known to the server, see the linear branch
    } else {
      ch[row.name] = ch[src];
    }
  }
  return s;
}

async function whatIf() {
  const out = $("#whatif-result");
  if (!last) return;
  const m = Number($("#width").value) || 1;
  const r = Number($("#resolution").value) || last.table.input_shape.at(-1);
  const mine = ++whatIfSeq;
  try {
    const t = await inspect(await scaled(last.spec, last.table, m, r));
    if (mine !== whatIfSeq) return;
    const base = last.table.totals;
    const ratio = (a, b) => (b ? `×${(a / b).toFixed(2)}` : "");
    out.replaceChildren(h("table", { class: "data", id: "whatif-table" },
      h("caption", {}, `width ×${m}, input ${shape(t.input_shape)}`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""), h("th", { scope: "col", class: "num" }, "as written"), h("th", { scope: "col", class: "num" }, "what if"), h("th", { scope: "col", class: "num" }, "change"))),
      h("tbody", {},
        h("tr", {}, h("th", { scope: "row" }, "Params"), h("td", { class: "num" }, count(base.params)), h("td", { class: "num", id: "whatif-params" }, count(t.totals.params)), h("td", { class: "num" }, ratio(t.totals.params, base.params))),
        h("tr", {}, h("th", { scope: "row" }, "MACs / image"), h("td", { class: "num" }, count(base.macs)), h("td", { class: "num", id: "whatif-macs" }, count(t.totals.macs)), h("td", { class: "num" }, ratio(t.totals.macs, base.macs))),
        h("tr", {}, h("th", { scope: "row" }, "Activations / image"), h("td", { class: "num" }, count(base.activation_bytes) + "B"), h("td", { class: "num" }, count(t.totals.activation_bytes) + "B"), h("td", { class: "num" }, ratio(t.totals.activation_bytes, base.activation_bytes))))));
    // how MACs grow with the resolution at this width: quadratically for a conv net
    const sweep = h("ul", { id: "whatif-sweep", "aria-label": "MACs per image by input resolution" });
    out.append(h("p", {}, `MACs per image at width ×${m}, by input resolution:`), sweep);
    for (const f of [0.5, 1, 1.5, 2]) {
      const rr = Math.max(1, Math.round(r * f));
      try {
        const ts = await inspect(await scaled(last.spec, last.table, m, rr));
        if (mine !== whatIfSeq) return;
        sweep.append(h("li", {}, `${rr}×${rr}: ${count(ts.totals.macs)} (×${(ts.totals.macs / t.totals.macs).toFixed(2)})`));
      } catch {
        if (mine !== whatIfSeq) return;
        sweep.append(h("li", {}, `${rr}×${rr}: does not fit`));
      }
    }
  } catch (err) {
    if (mine !== whatIfSeq) return;
    const msgs = err instanceof Problem && err.doc.errors ? err.doc.errors.map((e) => `${e.layer || ""} ${e.message}`) : [err.message];
    out.replaceChildren(h("p", {}, "This what-if does not fit together:"), ...msgs.map((msg) => h("p", { class: "problem" }, msg)));
  }
}
let whatIfSeq = 0;
$("#width").addEventListener("input", whatIf);
$("#resolution").addEventListener("input", whatIf);
$("#whatif").addEventListener("submit", (e) => e.preventDefault());

// ---------------------------------------------------------------- loading

function load(spec) {
  text.value = JSON.stringify(spec, null, 2);
  $("#resolution").value = "";
  check();
}

$("#load").addEventListener("change", async (e) => {
  const f = e.target.files[0];
  if (!f) return;
  const raw = await f.text();
  text.value = raw;
  $("#resolution").value = "";
  check();
});

$("#example").addEventListener("change", async (e) => {
  const name = e.target.value;
  if (!name) return;
  if (examples[name]) return load(examples[name]);
  const doc = await api(`/v1/models/${encodeURIComponent(name)}/versions/latest`);
  load(doc.spec);
});

const params = new URLSearchParams(location.search);
if (params.get("model")) {
  api(`/v1/models/${encodeURIComponent(params.get("model"))}/versions/${encodeURIComponent(params.get("version") || "latest")}`)
    .then((doc) => load(doc.spec))
    .catch((err) => errors.replaceChildren(problem(err.message, null)));
} else {
  load(Object.values(examples)[0]);
}
