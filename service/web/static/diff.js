// The model page's "Compare versions": two versions layer by layer (GET /v1/models/{name}/diff).
import { $, api, count, grouped, h, showError } from "./common.js";

const form = $("#compare");
const out = $("#diff");
const name = form.dataset.model;

// Each change has a symbol and a word as well as a colour, so it reads without colour too.
const MARK = { added: "+", removed: "−", changed: "~", same: "=" };

const side = (row, key) => (row ? count(row[key]) : "–");
const ratio = (x) => (x === null || x === undefined ? "–" : x === 0 ? "0" : `${(x * 100).toPrecision(3)} %`);

function arrow(a, b) {
  const delta = b - a;
  const sign = delta > 0 ? "+" : delta < 0 ? "−" : "±";
  return `${grouped(a)} → ${grouped(b)} (${sign}${grouped(Math.abs(delta))})`;
}

function render(doc) {
  const { from, to } = doc.totals;
  const tally = { added: 0, removed: 0, changed: 0, same: 0 };
  for (const l of doc.layers) tally[l.change] += 1;
  const summary = Object.entries(tally).filter(([, n]) => n).map(([c, n]) => `${n} ${c}`).join(", ");
  out.replaceChildren(
    h("h3", {}, `v${doc.versions.from} → v${doc.versions.to}`),
    h("dl", { class: "totals", id: "diff-totals" },
      h("div", {}, h("dt", {}, "Params"), h("dd", {}, arrow(from.params, to.params))),
      h("div", {}, h("dt", {}, "MACs / image"), h("dd", {}, arrow(from.macs, to.macs))),
      h("div", {}, h("dt", {}, "Layers"), h("dd", {}, summary))),
    h("table", { class: "data", id: "diff-table" },
      h("caption", {}, `Layers of ${name} v${doc.versions.from} against v${doc.versions.to}, in v${doc.versions.to}'s order`),
      h("thead", {}, h("tr", {}, ["Layer", "Change", "Changed fields", "Params from", "Params to",
        "MACs from", "MACs to", "Weight change"].map((c, i) => h("th", { scope: "col", class: i >= 3 ? "num" : null }, c)))),
      h("tbody", {}, doc.layers.map((l) => h("tr", { class: `change-${l.change}`, "data-layer": l.name, "data-change": l.change },
        h("th", { scope: "row" }, l.name),
        h("td", {}, h("span", { class: `change ${l.change}` }, h("span", { "aria-hidden": "true" }, MARK[l.change] + " "), l.change)),
        h("td", {}, l.fields.join(", ")),
        h("td", { class: "num" }, side(l.from, "params")), h("td", { class: "num" }, side(l.to, "params")),
        h("td", { class: "num" }, side(l.from, "macs")), h("td", { class: "num" }, side(l.to, "macs")),
        h("td", { class: "num", title: "‖W_to − W_from‖ / ‖W_from‖" }, ratio(l.weight_change)))))));
}

async function compare(event) {
  event?.preventDefault();
  const button = $("button", form);
  const a = $("#compare-from").value;
  const b = $("#compare-to").value;
  button.disabled = true;
  out.replaceChildren(h("p", { class: "muted" }, "Comparing…"));
  try {
    const q = new URLSearchParams({ from: a, to: b });
    render(await api(`/v1/models/${encodeURIComponent(name)}/diff?${q}`));
  } catch (err) {
    showError(out, err);
  } finally {
    button.disabled = false;
  }
}

form.addEventListener("submit", compare);
compare();
