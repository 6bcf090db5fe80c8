"""Winograd F(m×m, 3×3) convolutions: exact transforms, the float32 error they cost, and when the
engine uses them."""

from __future__ import annotations

import numpy as np
import pytest

from service import kernels
from service.kernels import WINOGRAD_TRANSFORMS, conv_kernel, winograd_kernel

RNG = np.random.default_rng(7)


def conv64(x, w, b, lo, hi):
    """The float64 reference: every 3×3 window times every filter, summed."""
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (lo[0], hi[0]), (lo[1], hi[1])])
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
    y = np.einsum("nchwkl,ockl->nohw", win, w.astype(np.float64), optimize=True)
    return y + (0 if b is None else b.astype(np.float64)[None, :, None, None])


@pytest.mark.parametrize("m", sorted(WINOGRAD_TRANSFORMS))
def test_the_transforms_compute_a_correlation_exactly(m):
    bt, g, at = WINOGRAD_TRANSFORMS[m]
    for _ in range(5):
        d, taps = RNG.normal(size=m + 2), RNG.normal(size=3)
        np.testing.assert_allclose(at @ ((g @ taps) * (bt @ d)), np.correlate(d, taps, "valid"),
                                   rtol=1e-12, atol=1e-12)  # fmt: skip


def direct_of(w, b, lo, hi, size):
    return kernels._im2col_kernel(w, b, (1, 1), (1, 1), lo, hi, 1, size)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize(
    ("shape", "lo", "hi"),
    [
        ((3, 5, 8, 8), (1, 1), (1, 1)),  # whole tiles
        ((2, 4, 7, 9), (1, 1), (1, 1)),  # the last tiles overhang: cropped
        ((4, 3, 6, 11), (1, 0), (2, 1)),  # asymmetric padding
        ((2, 6, 5, 5), (0, 0), (0, 0)),  # none
    ],
)
def test_winograd_matches_the_float64_convolution(m, shape, lo, hi):
    x = RNG.normal(size=shape).astype(np.float32)
    w = RNG.normal(size=(7, shape[1], 3, 3)).astype(np.float32)
    b = RNG.normal(size=7).astype(np.float32)
    size = shape[2:]
    for scratch in (1, 1 << 30):  # one image at a time, or all at once
        conv = winograd_kernel(w, b, lo, hi, size, m, direct_of(w, b, lo, hi, size),
                               min_tiles=0, scratch_bytes=scratch)  # fmt: skip
        np.testing.assert_allclose(conv(x), conv64(x, w, b, lo, hi), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("m", "bound"), [(2, 1e-6), (4, 1e-5)])
def test_the_float32_error_is_bounded(m, bound):
    """Error relative to the sum of the magnitudes of each output's terms, the scale that bounds
    any float32 summation. Measured: im2col ~2e-7, F(2×2) ~2e-7, F(4×4) ~3e-6 on layers of
    ResNet-18's shape; the bounds leave room for other data."""
    x = RNG.normal(size=(2, 64, 20, 20)).astype(np.float32)
    w = (RNG.normal(size=(64, 64, 3, 3)) / np.sqrt(9 * 64)).astype(np.float32)
    b = RNG.normal(size=64).astype(np.float32)
    y = conv_kernel(w, b, (1, 1), (1, 1), (1, 1), (1, 1), 1, (20, 20), winograd=m)(x)
    err = np.abs(y - conv64(x, w, b, (1, 1), (1, 1)))
    scale = conv64(np.abs(x), np.abs(w), np.abs(b), (1, 1), (1, 1))
    assert np.max(err / scale) < bound


def test_the_bias_and_a_fused_activation_are_applied():
    x = RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)
    w = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
    b = RNG.normal(size=4).astype(np.float32)
    relu = lambda y: np.maximum(y, 0, out=y)  # noqa: E731
    conv = winograd_kernel(w, b, (1, 1), (1, 1), (8, 8), 4, direct_of(w, b, (1, 1), (1, 1), (8, 8)),
                           relu, min_tiles=0)  # fmt: skip
    np.testing.assert_allclose(conv(x), np.maximum(conv64(x, w, b, (1, 1), (1, 1)), 0),
                               rtol=1e-4, atol=1e-4)  # fmt: skip


def test_small_batches_run_the_direct_kernel():
    x = RNG.normal(size=(1, 3, 8, 8)).astype(np.float32)  # 4 tiles of 4×4
    w = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
    direct = direct_of(w, None, (1, 1), (1, 1), (8, 8))
    conv = winograd_kernel(w, None, (1, 1), (1, 1), (8, 8), 4, direct, min_tiles=5)
    np.testing.assert_array_equal(conv(x), direct(x))
    assert not np.array_equal(conv(np.repeat(x, 2, axis=0))[:1], direct(x))  # 8 tiles: Winograd


def algorithm(w, stride=(1, 1), groups=1, **kw):
    conv = conv_kernel(w, None, stride, (1, 1), (1, 1), (1, 1), groups, (8, 8), **kw)
    return "winograd" if "winograd_kernel" in conv.__qualname__ else "im2col"


def test_which_convolutions_use_winograd(monkeypatch):
    w = np.zeros((64, 64, 3, 3), np.float32)
    monkeypatch.setattr(kernels, "WINOGRAD_TILE", 4)
    assert algorithm(w) == "winograd"
    assert algorithm(w, stride=(2, 2)) == "im2col"
    assert algorithm(w[:, :32], groups=2) == "im2col"
    assert algorithm(w[:32]) == "im2col"  # too few channels for the transforms to pay
    assert algorithm(np.zeros((64, 64, 5, 5), np.float32)) == "im2col"
    assert algorithm(w, winograd=0) == "im2col"
    monkeypatch.setattr(kernels, "WINOGRAD_TILE", 0)  # CONVSERVE_WINOGRAD=0
    assert algorithm(w) == "im2col"


@pytest.mark.parametrize(("value", "tile"), [(None, 4), ("4", 4), ("2", 2), ("0", 0), ("off", 0)])
def test_the_setting(value, tile):
    assert kernels.winograd_tile(value) == tile


def test_a_bad_setting_is_named():
    with pytest.raises(ValueError, match="CONVSERVE_WINOGRAD must be 4, 2 or 0"):
        kernels.winograd_tile("yes")


def test_the_plan_counts_the_transformed_weights_it_may_build():
    from service.architecture import Architecture
    from service.engine import compile_plan

    conv = {"type": "conv2d", "in_channels": 64, "out_channels": 64, "kernel_size": 3,
            "padding": 1, "bias": False}  # fmt: skip
    arch = Architecture.from_spec({"input": {"shape": [64, 8, 8]},
                                   "layers": [{"name": "c", **conv}]})  # fmt: skip
    weights = arch.random_weights(0)
    plain = 64 * 64 * 9 * 4
    tile = kernels.WINOGRAD_TILE
    transformed = (tile + 2) ** 2 * 64 * 64 * 4 if tile else 0
    assert compile_plan(arch, weights).nbytes == plain + transformed


def test_an_input_that_is_a_strided_view_and_needs_no_padding():
    """Tiles that cover the input exactly (no padding) read a non-contiguous input correctly."""
    x = RNG.normal(size=(3, 4, 8, 10)).astype(np.float32)[:, :, :, 1:9]  # a view, 8×8
    w = RNG.normal(size=(5, 4, 3, 3)).astype(np.float32)
    conv = winograd_kernel(w, None, (0, 0), (0, 0), (8, 8), 2,
                           direct_of(w, None, (0, 0), (0, 0), (8, 8)), min_tiles=0)  # fmt: skip
    np.testing.assert_allclose(conv(x), conv64(x, w, None, (0, 0), (0, 0)), rtol=1e-4, atol=1e-4)
