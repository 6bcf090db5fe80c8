// The version page: draw the graph, link boxes to table rows, measure per-layer time.
import { $, $$, api, base, versionData, showError } from "./common.js";
import { drawGraph } from "./graph.js";

const d = versionData();
const rows = Object.fromEntries($$("#layers tbody tr").map((tr) => [tr.dataset.layer, tr]));

function select(name) {
  graph.select(name);
  for (const tr of Object.values(rows)) tr.classList.remove("selected");
  const tr = rows[name];
  if (tr) {
    tr.classList.add("selected");
    tr.scrollIntoView({ block: "nearest" });
  }
}

const graph = drawGraph($("#graph"), d.table, d.spec.input.name,
  `Network of ${d.model} version ${d.version}`, select);
for (const [name, tr] of Object.entries(rows)) tr.addEventListener("click", () => select(name));

$("#measure").addEventListener("click", async () => {
  const status = $("#profile-status");
  const button = $("#measure");
  button.disabled = true;
  status.textContent = "measuring on the server…";
  try {
    const p = await api(`${base(d)}/profile`);
    for (const tr of Object.values(rows)) tr.querySelector(".time").textContent = "";
    for (const step of p.steps) {
      const [first, ...rest] = step.layers;
      const cell = rows[first] && rows[first].querySelector(".time");
      if (cell) {
        cell.textContent = step.ms.toFixed(3);
        cell.title = `${(100 * step.share).toFixed(1)}% of the run` + (rest.length ? `; includes ${rest.join(", ")}` : "");
        cell.style.setProperty("--share", `${Math.round(100 * step.share)}%`);
        cell.classList.add("bar");
      }
      for (const other of rest) {
        const c = rows[other] && rows[other].querySelector(".time");
        if (c) c.textContent = `in ${first}`;
      }
    }
    $("#time-total").textContent = p.total_ms.toFixed(3);
    status.textContent = `${p.total_ms.toFixed(2)} ms per image at batch 1, median of ${p.runs} runs` +
      (p.cached ? ` (cached, measured ${p.measured_at})` : "");
  } catch (err) {
    showError(status, err);
  } finally {
    button.disabled = false;
  }
});
