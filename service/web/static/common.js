// Shared helpers for the web interface's pages: DOM building, the /v1 API, number formats.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

const SVG_NS = "http://www.w3.org/2000/svg";

/** An element: h("td", {class: "num"}, "12"); attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "g", "rect", "path", "text", "title", "desc", "line", "circle", "tspan"].includes(tag);
  const el = svg ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export const shape = (s) => (s && s.length ? s.join("×") : "scalar");

/** 1234567 → "1.23 M" */
export function count(n) {
  if (n === null || n === undefined) return "–";
  for (const [u, size] of [["G", 1e9], ["M", 1e6], ["k", 1e3]]) {
    if (Math.abs(n) >= size) return `${(n / size).toPrecision(3).replace(/\.?0+$/, "")} ${u}`;
  }
  return String(n);
}

export const grouped = (n) => Number(n).toLocaleString("en-US");

/** An API error carrying the RFC 9457 problem document. */
export class Problem extends Error {
  constructor(status, doc) {
    super(doc && doc.detail ? doc.detail : `HTTP ${status}`);
    this.status = status;
    this.doc = doc || {};
  }
}

/** The write token the user typed on the register page (kept for this tab only). */
export const token = {
  get: () => sessionStorage.getItem("convserve-token") || "",
  set: (t) => (t ? sessionStorage.setItem("convserve-token", t) : sessionStorage.removeItem("convserve-token")),
};

/** Headers with the bearer token, when the user gave one (register page). */
export function withToken(headers = {}) {
  const t = token.get();
  return t ? { Authorization: `Bearer ${t}`, ...headers } : headers;
}

/** fetch() a JSON endpoint (with the token, when given); a non-2xx answer throws Problem. */
export async function api(path, options = {}) {
  const resp = await fetch(path, { ...options, headers: withToken(options.headers || {}) });
  const type = resp.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) throw new Problem(resp.status, typeof body === "object" ? body : { detail: body });
  return body;
}

/** The version page's embedded data: model, version, spec, labels, layer table. */
export function versionData() {
  return JSON.parse($("#version-data").textContent);
}

export const base = (d) => `/v1/models/${encodeURIComponent(d.model)}/versions/${d.version}`;

/** A problem as a list of messages (each validation error on its own line). */
export function problemMessages(err) {
  if (err instanceof Problem && Array.isArray(err.doc.errors) && err.doc.errors.length) {
    return err.doc.errors.map((e) => (e.layer ? `${e.layer}${e.field ? "." + e.field : ""}: ` : "") + e.message);
  }
  return [err.message || String(err)];
}

/** Show an error in a live region. */
export function showError(region, err) {
  region.replaceChildren(...problemMessages(err).map((m) => h("p", { class: "problem" }, m)));
}
