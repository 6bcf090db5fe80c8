// Drawing arrays on canvases: one pixel per value, scaled up with crisp edges by CSS.

/** min and max of a Float32Array (or of nested lists). */
export function range(data) {
  let lo = Infinity, hi = -Infinity;
  const walk = (a) => {
    if (typeof a === "number") { if (a < lo) lo = a; if (a > hi) hi = a; }
    else for (const b of a) walk(b);
  };
  if (data instanceof Float32Array) for (const v of data) { if (v < lo) lo = v; if (v > hi) hi = v; }
  else walk(data);
  return [lo, hi];
}

/** A colour for value v: diverging blue–white–red when the range crosses 0, else dark→light. */
export function colour(v, lo, hi, diverging = true) {
  if (Number.isNaN(v)) return [255, 255, 255];
  if (diverging && lo < 0 && hi > 0) {
    const m = Math.max(-lo, hi) || 1;
    const t = Math.max(-1, Math.min(1, v / m));
    if (t >= 0) return [255, Math.round(255 * (1 - t)), Math.round(255 * (1 - t))];
    return [Math.round(255 * (1 + t)), Math.round(255 * (1 + t)), 255];
  }
  const t = hi > lo ? (v - lo) / (hi - lo) : 0;
  const g = Math.round(255 * t);
  return [g, g, g];
}

function canvas(wid, hgt, px, label) {
  const c = document.createElement("canvas");
  c.width = wid; c.height = hgt;
  c.style.width = `${wid * px}px`; c.style.height = `${hgt * px}px`;
  c.setAttribute("role", "img");
  if (label) c.setAttribute("aria-label", label);
  return c;
}

/** A canvas of an H×W map stored row-major in `data` from `offset`. */
export function mapCanvas(data, offset, hgt, wid, lo, hi, px, label, diverging = true) {
  const c = canvas(wid, hgt, px, label);
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(wid, hgt);
  for (let k = 0; k < hgt * wid; k++) {
    const [r, g, b] = colour(data[offset + k], lo, hi, diverging);
    img.data[4 * k] = r; img.data[4 * k + 1] = g; img.data[4 * k + 2] = b; img.data[4 * k + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

/** An RGB canvas from a 3×H×W array (normalised over the whole image). */
export function rgbCanvas(data, hgt, wid, px, label) {
  const [lo, hi] = range(data);
  const c = canvas(wid, hgt, px, label);
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(wid, hgt);
  const s = hi > lo ? 255 / (hi - lo) : 0;
  const plane = hgt * wid;
  for (let k = 0; k < plane; k++) {
    for (let ch = 0; ch < 3; ch++) img.data[4 * k + ch] = Math.round((data[ch * plane + k] - lo) * s);
    img.data[4 * k + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

/** Nested lists (2-D) → {data, hgt, wid}. */
export function flat2d(rows) {
  const hgt = rows.length, wid = rows[0].length;
  const data = new Float32Array(hgt * wid);
  rows.forEach((r, y) => r.forEach((v, x) => (data[y * wid + x] = v)));
  return { data, hgt, wid };
}

/** Parse .npy bytes (float32, C order) → {shape, data}. */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const major = bytes[6];
  const view = new DataView(buffer);
  const hlen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(start, start + hlen));
  if (!/'descr':\s*'<f4'/.test(header)) throw new Error(`unexpected .npy dtype: ${header}`);
  const shape = (header.match(/'shape':\s*\(([^)]*)\)/)[1].match(/\d+/g) || []).map(Number);
  return { shape, data: new Float32Array(buffer.slice(start + hlen)) };
}

/** Screen pixels per value so that a map of `size` values is about `target` pixels wide. */
export const scaleFor = (size, target) => Math.max(1, Math.min(16, Math.floor(target / size)));
