// The register form: multipart POST with the write token when one is given.
import { $, $$, api, h, token, showError } from "./common.js";

const form = $("#register");
const tokenInput = $("#token");
tokenInput.value = token.get();

for (const radio of $$('input[name="kind"]')) {
  radio.addEventListener("change", () => {
    const onnx = $('input[name="kind"]:checked').value === "onnx";
    $("#spec-parts").hidden = onnx;
    $("#onnx-parts").hidden = !onnx;
  });
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("#outcome");
  const name = $("#name").value.trim();
  if (!/^[a-z0-9][a-z0-9._-]{0,63}$/.test(name)) {
    $("#name").setAttribute("aria-invalid", "true");
    out.replaceChildren(h("p", { class: "problem" }, "The model name must match ^[a-z0-9][a-z0-9._-]{0,63}$."));
    $("#name").focus();
    return;
  }
  $("#name").removeAttribute("aria-invalid");
  const body = new FormData();
  if ($('input[name="kind"]:checked').value === "onnx") {
    if ($("#onnx").files[0]) body.append("onnx", $("#onnx").files[0]);
  } else {
    if ($("#spec").files[0]) body.append("spec", $("#spec").files[0]);
    if ($("#weights").files[0]) body.append("weights", $("#weights").files[0]);
  }
  body.append("description", $("#description").value);
  token.set(tokenInput.value.trim());
  const headers = tokenInput.value.trim() ? { Authorization: `Bearer ${tokenInput.value.trim()}` } : {};
  out.replaceChildren(h("p", { class: "muted" }, "uploading…"));
  try {
    const doc = await api(`/v1/models/${encodeURIComponent(name)}/versions`, { method: "POST", body, headers });
    const href = `/models/${encodeURIComponent(name)}/versions/${doc.version}`;
    out.replaceChildren(h("p", { class: "ok" }, `Registered ${name} version ${doc.version}: `, h("a", { href }, "open it")));
  } catch (err) {
    showError(out, err);
  }
});
