"""Slow, obviously-correct reference implementations of PyTorch's conv, pooling and LRN.

This is the reference the engine is tested against, so it imports nothing from `service/` and
favours plain loops over speed: every function walks the output positions and the kernel taps one
by one and accumulates in float64. Only the batch and channel axes are handled as NumPy slices.

Arrays are batch first, channels second, then 1, 2 or 3 spatial axes (N, C, *spatial), as in
PyTorch. Sizes, strides, paddings and dilations are given per spatial axis.

The definitions follow PyTorch (ATen's `pooling_output_shape`, `pool2d_shape_check`,
`pool3d_shape_check`, the avg-pool kernels, `torch.nn.functional.local_response_norm`):

* conv output length: floor((L + lo + hi - d·(k-1) - 1) / s) + 1; padding='same' (stride 1 only)
  pads d·(k-1) in total per axis, the odd pixel on the high side.
* pool output length: the same with lo = hi = p, rounded up instead of down in ceil_mode, where a
  window must still start inside the input or its left padding (one fewer otherwise).
* a pool's padding is at most half its kernel size, k // 2 (PyTorch compares with the kernel size
  itself, not the dilated extent); avg_pool3d also wants every input length >= the kernel size.
* max pooling never picks padding (a window with no tap on the input gives -inf, as PyTorch);
  avg pooling sums the taps on the input and divides by the number of taps on the input
  (count_include_pad=False) or on the input or its padding (True): taps in ceil_mode's overhang,
  past the right padding, never count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# ------------------------------------------------------------------------------ output sizes


def conv_out_len(length: int, k: int, stride: int, dilation: int, lo: int, hi: int) -> int:
    return (length + lo + hi - dilation * (k - 1) - 1) // stride + 1


def same_padding(kernel: Sequence[int], dilation: Sequence[int]) -> tuple[list[int], list[int]]:
    total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    lo = [t // 2 for t in total]
    return lo, [t - a for t, a in zip(total, lo, strict=True)]


def pool_out_len(length: int, k: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    room = length + 2 * pad - dilation * (k - 1) - 1  # how far the first window can slide
    if not ceil_mode:
        return room // stride + 1
    n = -(-room // stride) + 1  # ceil(room / stride) + 1
    if (n - 1) * stride >= length + pad:  # the last window would start in the right padding
        n -= 1
    return n


# ---------------------------------------------------------------------------------- validity


def conv_problems(
    lengths: Sequence[int],
    in_channels: int,
    out_channels: int,
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    padding: str | Sequence[int],
    groups: int,
) -> list[str]:
    """Why PyTorch would refuse this convolution; empty when it is fine."""
    problems = []
    if in_channels % groups or out_channels % groups:
        problems.append("groups must divide in_channels and out_channels")
    if padding == "same":
        if any(s != 1 for s in stride):
            problems.append("padding='same' needs stride 1")
        lo, hi = same_padding(kernel, dilation)
    else:
        lo = hi = list(padding)
    for i, length in enumerate(lengths):
        if conv_out_len(length, kernel[i], stride[i], dilation[i], lo[i], hi[i]) < 1:
            problems.append(f"kernel larger than the padded input on axis {i}")
    return problems


def pool_problems(
    lengths: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
    mode: str,
) -> list[str]:
    """Why PyTorch would refuse this pooling; empty when it is fine."""
    problems = []
    for i, length in enumerate(lengths):
        if padding[i] > kernel[i] // 2:
            problems.append(f"padding more than half the kernel size on axis {i}")
        if pool_out_len(length, kernel[i], stride[i], padding[i], dilation[i], ceil_mode) < 1:
            problems.append(f"no output on axis {i}")
        if mode == "avg" and len(lengths) == 3 and length < kernel[i]:
            problems.append(f"avg_pool3d input smaller than the kernel on axis {i}")
    return problems


# ------------------------------------------------------------------------------ the kernels


def _tap_index(
    pos: Sequence[int],
    tap: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    lo: Sequence[int],
) -> tuple[int, ...]:
    """The input index read by kernel tap `tap` of the window at output position `pos`."""
    return tuple(
        p * s - pad + t * d for p, t, s, d, pad in zip(pos, tap, stride, dilation, lo, strict=True)
    )


def _inside(index: Sequence[int], lengths: Sequence[int]) -> bool:
    return all(0 <= i < n for i, n in zip(index, lengths, strict=True))


def conv_nd(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: Sequence[int],
    dilation: Sequence[int],
    pad_lo: Sequence[int],
    pad_hi: Sequence[int],
    groups: int,
) -> np.ndarray:
    """Cross-correlation as torch.nn.functional.conv{1,2,3}d; weight is (O, C/groups, *k)."""
    x, weight = x.astype(np.float64), weight.astype(np.float64)
    n_batch, _, *lengths = x.shape
    out_ch, group_in, *kernel = weight.shape
    group_out = out_ch // groups
    out_len = [
        conv_out_len(n, k, s, d, a, b)
        for n, k, s, d, a, b in zip(lengths, kernel, stride, dilation, pad_lo, pad_hi, strict=True)
    ]
    y = np.zeros((n_batch, out_ch, *out_len))
    for g in range(groups):
        ins = slice(g * group_in, (g + 1) * group_in)
        outs = slice(g * group_out, (g + 1) * group_out)
        for pos in np.ndindex(*out_len):
            for tap in np.ndindex(*kernel):
                src = _tap_index(pos, tap, stride, dilation, pad_lo)
                if not _inside(src, lengths):
                    continue  # zero padding adds nothing
                # (N, C/groups) · (C/groups, O/groups): this tap's term for every filter of g
                y[(slice(None), outs, *pos)] += (
                    x[(slice(None), ins, *src)] @ weight[(outs, slice(None), *tap)].T
                )
    if bias is not None:
        y += bias.astype(np.float64).reshape(1, out_ch, *[1] * len(out_len))
    return y


def max_pool_nd(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> np.ndarray:
    """torch.nn.functional.max_pool{1,2,3}d: the largest tap on the input, -inf if none is."""
    x = x.astype(np.float64)
    n_batch, channels, *lengths = x.shape
    out_len = [
        pool_out_len(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip(lengths, kernel, stride, padding, dilation, strict=True)
    ]
    y = np.full((n_batch, channels, *out_len), -np.inf)
    for pos in np.ndindex(*out_len):
        for tap in np.ndindex(*kernel):
            src = _tap_index(pos, tap, stride, dilation, padding)
            if _inside(src, lengths):
                here = (slice(None), slice(None), *pos)
                y[here] = np.maximum(y[here], x[(slice(None), slice(None), *src)])
    return y


def avg_pool_nd(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
) -> np.ndarray:
    """torch.nn.functional.avg_pool{1,2,3}d (no divisor_override)."""
    x = x.astype(np.float64)
    n_batch, channels, *lengths = x.shape
    ones = [1] * len(lengths)
    out_len = [
        pool_out_len(n, k, s, p, 1, ceil_mode)
        for n, k, s, p in zip(lengths, kernel, stride, padding, strict=True)
    ]
    padded = [n + 2 * p for n, p in zip(lengths, padding, strict=True)]
    y = np.zeros((n_batch, channels, *out_len))
    for pos in np.ndindex(*out_len):
        total, count = 0.0, 0
        for tap in np.ndindex(*kernel):
            src = _tap_index(pos, tap, stride, ones, padding)
            if _inside(src, lengths):
                total = total + x[(slice(None), slice(None), *src)]
                count += 1
            elif count_include_pad and _inside(
                [i + p for i, p in zip(src, padding, strict=True)], padded
            ):
                count += 1  # a tap on the zero padding: adds 0, but counts
        y[(slice(None), slice(None), *pos)] = total / count
    return y


def local_response_norm(
    x: np.ndarray, size: int, alpha: float, beta: float, k: float
) -> np.ndarray:
    """torch.nn.LocalResponseNorm: b_c = a_c / (k + alpha/size · Σ a_c'²)^beta, where c' runs over
    the channels c - size//2 .. c + (size-1)//2 that exist (missing ones count as 0)."""
    x = x.astype(np.float64)
    channels = x.shape[1]
    y = np.empty_like(x)
    for c in range(channels):
        lo, hi = max(0, c - size // 2), min(channels - 1, c + (size - 1) // 2)
        energy = sum(x[:, j] ** 2 for j in range(lo, hi + 1))
        y[:, c] = x[:, c] / (k + alpha / size * energy) ** beta
    return y
