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

#: Upper bound on the im2col buffer; the batch is processed in chunks that fit it.
DEFAULT_SCRATCH_BYTES = 64 * 1024 * 1024


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
) -> Callable[[np.ndarray], np.ndarray]:
    """N-d grouped, dilated, strided convolution (cross-correlation, as PyTorch) via im2col + GEMM,
    prepared for one input size: everything but the batch is worked out once, here.

    weight is (O, C/groups, *k). The padded input is viewed as (n, C, *k, *out) without copying;
    one copy turns each chunk of the batch into columns (n, groups, C/groups·kvol, outvol) and a
    batched matmul with the weight (groups, O/groups, C/groups·kvol) writes straight into the
    (N, O, outvol) output, so there is no transpose afterwards.
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
    w = np.ascontiguousarray(weight.reshape(groups, og, cg * kvol), dtype=np.float32)
    b = None if bias is None else bias.reshape(1, out_ch, 1).astype(np.float32)
    padded = any(pad_lo) or any(pad_hi)
    # Byte strides of a contiguous (n, C, *sp) float32 array, and of the window view over it.
    s_spatial = [4 * math.prod(sp[i + 1 :]) for i in range(rank)]
    s_channel = 4 * math.prod(sp)
    s_item = s_channel * channels
    view_strides = (
        s_item,
        s_channel,
        *(s_spatial[i] * dilation[i] for i in range(rank)),
        *(s_spatial[i] * stride[i] for i in range(rank)),
    )
    per_item = channels * kvol * ovol * 4
    max_chunk = max(1, scratch_bytes // max(per_item, 1))

    def conv(x: np.ndarray) -> np.ndarray:
        n_batch = x.shape[0]
        xp = pad_spatial(x, pad_lo, pad_hi) if padded else x
        xp = np.ascontiguousarray(xp, dtype=np.float32)
        y = np.empty((n_batch, out_ch, ovol), dtype=np.float32)
        for n0 in range(0, n_batch, max_chunk):
            n = min(max_chunk, n_batch - n0)
            # The windows as a strided view of the padded input; the ndarray constructor costs
            # a fraction of as_strided, which matters for small inputs.
            view = np.ndarray((n, channels, *kshape, *out_sp), np.float32, xp, n0 * s_item,
                              view_strides)  # fmt: skip
            cols = view.reshape(n, groups, cg * kvol, ovol)  # the one copy (none for a 1×1)
            np.matmul(w, cols, out=y[n0 : n0 + n].reshape(n, groups, og, ovol))
        if b is not None:
            y += b
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
    pad_hi: Sequence[int],
    out_sp: Sequence[int],
    mode: str,
    divisor: np.ndarray | None = None,
    dilation: Sequence[int] | None = None,
) -> np.ndarray:
    """Max or average pooling as running reductions over strided slices, one axis at a time.

    A window's max (or sum) is the max (sum) over its rows of each row's max (sum), so each
    spatial axis is reduced in turn: k strided slices per axis instead of k^rank, each pass on a
    smaller array. pad_hi may exceed the layer's padding to make room for ceil_mode's last
    windows; max pooling pads with -inf so padding never wins, average pooling pads with 0 and
    divides by `divisor` (broadcastable to the spatial output), which carries PyTorch's
    count_include_pad rule.
    """
    fill = -np.inf if mode == "max" else 0.0
    acc = pad_spatial(x, pad_lo, pad_hi, fill)
    reduce = np.maximum if mode == "max" else np.add
    per_axis = _axis_slices(
        tuple(kernel), tuple(stride), tuple(out_sp), tuple(dilation or (1,) * len(kernel))
    )
    for first, *rest in per_axis:
        src = acc
        acc = np.array(src[first], dtype=np.float32, copy=True)
        for sl in rest:
            reduce(acc, src[sl], out=acc)
    if mode == "avg":
        acc *= (1.0 / divisor).astype(np.float32)
    return acc


@functools.lru_cache(maxsize=256)
def _axis_slices(
    kernel: tuple[int, ...], stride: tuple[int, ...], out_sp: tuple[int, ...], dilation: tuple
) -> list[list[tuple[slice, ...]]]:
    """Per spatial axis, one index per tap: that tap of every window along the axis."""
    rank = len(kernel)
    axes = []
    for a in range(rank):
        taps = []
        for o in range(0, kernel[a] * dilation[a], dilation[a]):
            index = [slice(None)] * (rank + 2)
            index[2 + a] = slice(o, o + stride[a] * (out_sp[a] - 1) + 1, stride[a])
            taps.append(tuple(index))
        axes.append(taps)
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
