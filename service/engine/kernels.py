"""Vectorised NumPy kernels for N-d convolution, pooling and normalisation.

Pure NumPy, no imports from the rest of the service: the layer catalogue calls these from its
forward passes, and nothing here knows about layers or specs. Arrays are float32, batch first,
channels second (NC + spatial), as in PyTorch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np


def conv_out_size(length: int, k: int, stride: int, dilation: int, pad_lo: int, pad_hi: int) -> int:
    return (length + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


def pad_spatial(
    x: np.ndarray, lo: Sequence[int], hi: Sequence[int], value: float = 0.0
) -> np.ndarray:
    """Pad the spatial axes (all but N and C); returns x itself when there is nothing to pad."""
    if not any(lo) and not any(hi):
        return x
    shape = (*x.shape[:2], *(n + a + b for n, a, b in zip(x.shape[2:], lo, hi, strict=True)))
    # A filled buffer and one slice assignment: several times cheaper than np.pad.
    out = np.full(shape, value, dtype=np.float32)
    inner = (slice(a, a + n) for a, n in zip(lo, x.shape[2:], strict=True))
    out[(slice(None), slice(None), *inner)] = x
    return out


#: Target size of one im2col chunk. Columns built and multiplied while they sit in the CPU's
#: cache run at memory-copy speed; a whole batch's columns spill to DRAM and the copy then costs
#: as much as the GEMM. Measured on ResNet-18's 3×3 convs at batch 8 (2-core EPYC, 32 MiB L3):
#: 56×56 maps 20.8 ms with 64 MiB chunks, 15.3 with 1 MiB, 13.7 with 2-4 MiB.
DEFAULT_SCRATCH_BYTES = 4 * 1024 * 1024
#: Below this many output positions per image, the images of a chunk share one GEMM (their
#: columns side by side) instead of one small GEMM each: a 7×7 map gives only 49 columns
#: (ResNet-18's 512-channel 3×3 conv at batch 8: 14.1 → 12.0 ms); at 28×28 it no longer pays.
MERGE_BELOW = 256

Epilogue = Callable[[np.ndarray], object]


def conv_kernel(
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: Sequence[int],
    dilation: Sequence[int],
    pad_lo: Sequence[int],
    pad_hi: Sequence[int],
    groups: int,
    in_spatial: Sequence[int],
    scratch_bytes: int = DEFAULT_SCRATCH_BYTES,
    epilogue: Epilogue | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """N-d grouped, dilated, strided convolution (cross-correlation, as PyTorch) via im2col + GEMM,
    prepared for one input size: everything but the batch is worked out once, here.

    weight is (O, C/groups, *k). The padded input is viewed as (n, groups, C/groups, *k, *out)
    without copying, and the output is made a chunk at a time, each chunk's columns no bigger
    than `scratch_bytes` so that they stay in cache: a few whole images, or a band of output rows
    of one image. For large output maps each image's columns (groups, C/groups·kvol, band) meet
    the weight (groups, O/groups, C/groups·kvol) in a matmul that writes straight into the
    (N, O, outvol) output. For small maps the chunk's images are laid side by side so that one
    GEMM covers them all, and its result is transposed into place. A 1×1 stride-1 conv needs no
    columns at all. The bias and `epilogue` (an in-place function such as a fused ReLU) are
    applied to each chunk of output while it is still in cache.
    """
    rank = len(in_spatial)
    out_ch, cg = weight.shape[0], weight.shape[1]
    channels, og = cg * groups, out_ch // groups
    kshape = tuple(weight.shape[2:])
    sp = tuple(n + a + b for n, a, b in zip(in_spatial, pad_lo, pad_hi, strict=True))
    out_sp = tuple(
        (sp[i] - dilation[i] * (kshape[i] - 1) - 1) // stride[i] + 1 for i in range(rank)
    )
    kvol, ovol = math.prod(kshape), math.prod(out_sp)
    depth = cg * kvol
    w = np.ascontiguousarray(weight.reshape(groups, og, depth), dtype=np.float32)
    b = None if bias is None else np.asarray(bias, dtype=np.float32).reshape(groups, og, 1)
    padded = any(pad_lo) or any(pad_hi)
    pointwise = kvol == 1 and not padded and all(s == 1 for s in stride)
    # Byte strides of a contiguous (n, C, *sp) float32 array, and of the window view over it.
    s_spatial = [4 * math.prod(sp[i + 1 :]) for i in range(rank)]
    s_channel = 4 * math.prod(sp)
    s_item = s_channel * channels
    view_strides = (
        s_item,
        cg * s_channel,
        s_channel,
        *(s_spatial[i] * dilation[i] for i in range(rank)),
        *(s_spatial[i] * stride[i] for i in range(rank)),
    )
    # Chunking: `images` whole images at a time, or one image in bands of `band` output rows.
    per_item = 4 * (out_ch if pointwise else channels * kvol) * ovol
    images = scratch_bytes // max(per_item, 1)
    rows, row = out_sp[0], ovol // out_sp[0]
    band = rows if images else max(1, scratch_bytes * rows // per_item)
    images = max(1, images)
    merge = ovol < MERGE_BELOW and images > 1 and not pointwise
    first_out_axis = 3 + rank  # in the window view (n, groups, cg, *k, *out)

    def finish(chunk: np.ndarray) -> None:
        if b is not None:
            chunk += b
        if epilogue is not None:
            epilogue(chunk)

    def conv(x: np.ndarray) -> np.ndarray:
        n_batch = x.shape[0]
        xp = pad_spatial(x, pad_lo, pad_hi) if padded else x
        xp = np.ascontiguousarray(xp, dtype=np.float32)
        y = np.empty((n_batch, out_ch, ovol), dtype=np.float32)
        yg = y.reshape(n_batch, groups, og, ovol)
        if pointwise:  # the input already is the columns
            xg = xp.reshape(n_batch, groups, cg, ovol)
            for n0 in range(0, n_batch, images):
                target = yg[n0 : n0 + images]
                np.matmul(w, xg[n0 : n0 + images], out=target)
                finish(target)
            return y.reshape(n_batch, out_ch, *out_sp)
        for n0 in range(0, n_batch, images):
            n = min(images, n_batch - n0)
            # The windows as a strided view of the padded input; the ndarray constructor costs
            # a fraction of as_strided, which matters for small inputs.
            view = np.ndarray((n, groups, cg, *kshape, *out_sp), np.float32, xp, n0 * s_item,
                              view_strides)  # fmt: skip
            if merge and n > 1:
                # Columns (groups, depth, n·outvol): the images side by side, one GEMM for all.
                cols = np.empty((groups, cg, *kshape, n, *out_sp), dtype=np.float32)
                np.copyto(cols, np.moveaxis(view, 0, 2 + rank))
                prod = np.matmul(w, cols.reshape(groups, depth, n * ovol))
                finish(prod)
                yg[n0 : n0 + n] = np.moveaxis(prod.reshape(groups, og, n, ovol), 2, 0)
                continue
            for r0 in range(0, rows, band):
                r1 = min(rows, r0 + band)
                part = view
                if band < rows:
                    part = view[(slice(None),) * first_out_axis + (slice(r0, r1),)]
                cols = part.reshape(n, groups, depth, (r1 - r0) * row)  # the one copy
                target = yg[n0 : n0 + n, :, :, r0 * row : r1 * row]
                np.matmul(w, cols, out=target)
                finish(target)
        return y.reshape(n_batch, out_ch, *out_sp)

    return conv


def conv_nd(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: Sequence[int],
    dilation: Sequence[int],
    pad_lo: Sequence[int],
    pad_hi: Sequence[int],
    groups: int = 1,
    scratch_bytes: int = DEFAULT_SCRATCH_BYTES,
) -> np.ndarray:
    """One convolution (see conv_kernel), preparing and running at once."""
    kernel = conv_kernel(
        weight, bias, stride, dilation, pad_lo, pad_hi, groups, x.shape[2:], scratch_bytes
    )
    return kernel(x)


def pool_nd(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    pad_lo: Sequence[int],
    out_sp: Sequence[int],
    mode: str,
    divisor: np.ndarray | None = None,
    dilation: Sequence[int] | None = None,
    scratch_bytes: int = DEFAULT_SCRATCH_BYTES,
) -> np.ndarray:
    """Max or average pooling as running reductions over strided slices, one axis at a time.

    A window's max (or sum) is the max (sum) over its rows of each row's max (sum), so each
    spatial axis is reduced in turn: k strided slices per axis instead of k^rank, each pass on a
    smaller array. Nothing is padded: each tap reduces only the outputs whose window has that tap
    inside the input, which is what padding with -inf (max) or 0 (average) amounts to, and the
    same holds for ceil_mode's last windows that reach past the end. Average pooling then divides
    by `divisor` (broadcastable to the spatial output), which carries PyTorch's
    count_include_pad rule. Maps are pooled a cache-sized group at a time, so that each axis'
    pass reads the previous one's result from cache (ResNet-18's stem pool at batch 8: 13.9 ms
    for the batch at once, 7.4 ms in groups of 64 maps).
    """
    taps = _axis_taps(tuple(x.shape[2:]), tuple(kernel), tuple(stride), tuple(pad_lo),
                      tuple(out_sp), tuple(dilation or (1,) * len(kernel)))  # fmt: skip
    scale = None if mode != "avg" else (1.0 / divisor).astype(np.float32)
    maps = x.shape[0] * x.shape[1]
    group = max(1, scratch_bytes // (4 * math.prod(x.shape[2:])))
    if group >= maps:
        return _pool(x, taps, out_sp, mode, scale)
    flat = x.reshape(1, maps, *x.shape[2:])
    out = np.empty((1, maps, *out_sp), dtype=np.float32)
    for m0 in range(0, maps, group):
        out[:, m0 : m0 + group] = _pool(flat[:, m0 : m0 + group], taps, out_sp, mode, scale)
    return out.reshape(*x.shape[:2], *out_sp)


def _pool(
    x: np.ndarray, taps: list, out_sp: Sequence[int], mode: str, scale: np.ndarray | None
) -> np.ndarray:
    reduce = np.maximum if mode == "max" else np.add
    acc = x
    for axis, (init, others) in enumerate(taps):
        src = acc
        if init is None:  # no tap is inside the input for every window
            shape = list(src.shape)
            shape[2 + axis] = out_sp[axis]
            acc = np.full(shape, -np.inf if mode == "max" else 0.0, dtype=np.float32)
        else:
            acc = np.array(src[init], dtype=np.float32, copy=True)
        for dst, sl in others:
            view = acc[dst]
            reduce(view, src[sl], out=view)
    if scale is not None:
        acc *= scale
    return acc


@functools.lru_cache(maxsize=256)
def _axis_taps(
    lengths: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    pad_lo: tuple[int, ...],
    out_sp: tuple[int, ...],
    dilation: tuple[int, ...],
) -> list[tuple[tuple | None, list[tuple[tuple, tuple]]]]:
    """Per spatial axis: the index of a tap inside the input for every window (None if there is
    none), and for each other tap, (the outputs it reaches, the input values it reads there)."""
    rank = len(kernel)
    axes = []
    for a in range(rank):
        length, s, n = lengths[a], stride[a], out_sp[a]

        def index(sl: slice, a: int = a) -> tuple:
            return (slice(None),) * (2 + a) + (sl,)

        init, taps = None, []
        for j in range(kernel[a]):
            offset = j * dilation[a] - pad_lo[a]  # input position of this tap for output 0
            first = max(0, -(offset // s) if offset < 0 else 0)  # ceil(-offset / s)
            last = min(n - 1, (length - 1 - offset) // s)
            if last < first:
                continue  # this tap is in the padding for every window
            start = first * s + offset
            src = index(slice(start, start + (last - first) * s + 1, s))
            if init is None and first == 0 and last == n - 1:
                init = src
            else:
                taps.append((index(slice(first, last + 1)), src))
        axes.append((init, taps))
    return axes


def avg_pool_divisor(
    lengths: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    out_sp: Sequence[int],
    count_include_pad: bool,
) -> np.ndarray:
    """PyTorch's per-window divisor: padding counts (or not), the ceil_mode overhang never does."""
    per_axis = []
    for length, k, st, p, n in zip(lengths, kernel, stride, padding, out_sp, strict=True):
        start = np.arange(n) * st - p
        end = np.minimum(start + k, length + p)
        if count_include_pad:
            count = end - start
        else:
            count = np.minimum(end, length) - np.maximum(start, 0)
        per_axis.append(count.astype(np.float64))
    div = per_axis[0]
    for c in per_axis[1:]:
        div = np.multiply.outer(div, c)
    return div


def local_response_norm(
    x: np.ndarray, size: int, alpha: float, beta: float, k: float
) -> np.ndarray:
    """torch.nn.LocalResponseNorm: x / (k + alpha/size · Σ x² over `size` channels around)^β."""
    sq = np.square(x)
    channels = x.shape[1]
    lo, hi = size // 2, (size - 1) // 2
    padded = np.pad(sq, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    acc = np.zeros_like(x)
    for i in range(size):
        acc += padded[:, i : i + channels]
    div = acc * np.float32(alpha / size) + np.float32(k)
    return x / np.power(div, np.float32(beta))


def softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z
