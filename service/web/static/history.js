// A model's registry history (GET /v1/models/{name}/history), newest first.
import { $, api, h, showError } from "./common.js";

const box = $("#history");
const name = box.dataset.model;
try {
  const doc = await api(`/v1/models/${encodeURIComponent(name)}/history`);
  const events = doc.events || [];
  if (!events.length) box.replaceChildren(h("p", {}, "No recorded writes."));
  else box.replaceChildren(h("table", { class: "data", id: "history-table" },
    h("caption", {}, `Every registry write to ${name}, newest first`),
    h("thead", {}, h("tr", {}, ["When", "Who", "Action", "Version", "Alias", "Previously"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, events.map((e) => h("tr", {},
      h("td", {}, h("time", { datetime: e.at }, (e.at || "").replace("T", " ").slice(0, 19))), h("td", {}, e.actor ?? ""),
      h("td", {}, e.action), h("td", {}, e.version ?? ""), h("td", {}, e.alias ?? ""), h("td", {}, e.previous_version ?? ""))))));
} catch (err) {
  showError(box, err);
}
