"""Vectorised NumPy kernels for N-d convolution, pooling and normalisation.

Pure NumPy, no imports from the rest of the service: the layer catalogue calls these from its
forward passes, and nothing here knows about layers or specs. Arrays are float32, batch first,
channels second (NC + spatial), as in PyTorch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

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
    widths = [(0, 0), (0, 0)] + [(int(a), int(b)) for a, b in zip(lo, hi, strict=True)]
    return np.pad(x, widths, mode="constant", constant_values=value)


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
    """N-d grouped, dilated, strided convolution (cross-correlation, as PyTorch) via im2col + GEMM.

    weight is (O, C/groups, *k). The padded input is viewed as (n, C, *k, *out) without copying;
    one copy turns each chunk of the batch into columns (n, groups, C/groups·kvol, outvol) and a
    batched matmul with the weight (groups, O/groups, C/groups·kvol) writes straight into the
    (N, O, outvol) output, so there is no transpose afterwards.
    """
    n_batch, channels = x.shape[:2]
    rank = x.ndim - 2
    out_ch = weight.shape[0]
    kshape = weight.shape[2:]
    xp = pad_spatial(x, pad_lo, pad_hi)
    sp = xp.shape[2:]
    out_sp = tuple(
        (sp[i] - dilation[i] * (kshape[i] - 1) - 1) // stride[i] + 1 for i in range(rank)
    )
    kvol, ovol = math.prod(kshape), math.prod(out_sp)
    cg, og = channels // groups, out_ch // groups
    w = weight.reshape(groups, og, cg * kvol)
    y = np.empty((n_batch, out_ch, ovol), dtype=np.float32)

    s = xp.strides
    win_strides = tuple(s[2 + i] * dilation[i] for i in range(rank))
    out_strides = tuple(s[2 + i] * stride[i] for i in range(rank))
    per_item = channels * kvol * ovol * 4
    chunk = max(1, min(n_batch, scratch_bytes // max(per_item, 1)))
    for n0 in range(0, n_batch, chunk):
        xc = xp[n0 : n0 + chunk]
        n = xc.shape[0]
        view = as_strided(
            xc,
            shape=(n, channels, *kshape, *out_sp),
            strides=(s[0], s[1], *win_strides, *out_strides),
            writeable=False,
        )
        cols = view.reshape(n, groups, cg * kvol, ovol)  # the one copy (none for a plain 1×1)
        np.matmul(w, cols, out=y[n0 : n0 + n].reshape(n, groups, og, ovol))
    if bias is not None:
        y += bias.reshape(1, out_ch, 1)
    return y.reshape(n_batch, out_ch, *out_sp)


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
    """Max or average pooling as running reductions over strided slices (one per kernel offset).

    pad_hi may exceed the layer's padding to make room for ceil_mode's last windows; max pooling
    pads with -inf so padding never wins, average pooling pads with 0 and divides by `divisor`
    (broadcastable to the spatial output), which carries PyTorch's count_include_pad rule.
    """
    fill = -np.inf if mode == "max" else 0.0
    xp = pad_spatial(x, pad_lo, pad_hi, fill)
    reduce = np.maximum if mode == "max" else np.add
    dilation = dilation or (1,) * len(kernel)
    acc: np.ndarray | None = None
    for offs in itertools.product(
        *(range(0, k * d, d) for k, d in zip(kernel, dilation, strict=True))
    ):
        sl = tuple(
            slice(o, o + st * (n - 1) + 1, st)
            for o, st, n in zip(offs, stride, out_sp, strict=True)
        )
        v = xp[(slice(None), slice(None), *sl)]
        if acc is None:
            acc = np.array(v, dtype=np.float32, copy=True)
        else:
            reduce(acc, v, out=acc)
    assert acc is not None
    if mode == "avg":
        acc *= (1.0 / divisor).astype(np.float32)
    return acc


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
