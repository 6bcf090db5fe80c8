"""Property tests: the engine (through Architecture + compile_plan) against tests/helpers/oracle.py.

Hypothesis draws small random conv, pool and LRN layers of every rank (so each example runs in
milliseconds), runs them through the public path, and compares values (relative error <= 1e-5 of
the magnitude of the terms summed) and shapes with the slow loop oracle. Further properties check
that the spec validation accepts exactly the configurations the oracle (PyTorch's rules) accepts,
on configurations drawn around the edge of validity. Runs are derandomized and database-free so
CI sees the same examples every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from service.architecture import Architecture
from service.engine import compile_plan
from service.errors import SpecError
from tests.helpers import oracle

BASE = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

RTOL = 1e-5
MAX_CHANNELS = 6
MAX_SPATIAL = {1: 9, 2: 9, 3: 6}  # rank 3 kept smaller so the loop oracle stays fast
MAX_KERNEL = {1: 4, 2: 4, 3: 3}


# ------------------------------------------------------------------------------------ helpers


@dataclass
class Case:
    """One layer applied to one batch: the spec layer, the input shape, weights and data."""

    layer: dict[str, Any]
    in_shape: tuple[int, ...]
    weights: dict[str, np.ndarray]
    x: np.ndarray
    cfg: Any = None  # the drawn ConvCfg / PoolCfg, for the oracle


def build(layer: dict[str, Any], in_shape: tuple[int, ...]) -> Architecture:
    return Architecture.from_spec({"input": {"shape": list(in_shape)}, "layers": [layer]})


def run_engine(case: Case) -> tuple[Architecture, np.ndarray]:
    arch = build(case.layer, case.in_shape)
    return arch, compile_plan(arch, case.weights).run(case.x)


def accepted(layer: dict[str, Any], in_shape: tuple[int, ...]) -> Architecture | None:
    try:
        return build(layer, in_shape)
    except SpecError:
        return None


def assert_matches(
    arch: Architecture, actual: np.ndarray, expected: np.ndarray, scale: np.ndarray
) -> None:
    """Same shape (engine output and declared layer shape), same infinities, and every finite
    value within RTOL of `scale`, the sum of the magnitudes of the terms behind it."""
    assert actual.shape == expected.shape, f"engine shape {actual.shape} != oracle {expected.shape}"
    assert tuple(arch.output_shape) == expected.shape[1:], (
        f"declared output shape {arch.output_shape} != oracle {expected.shape[1:]}"
    )
    assert actual.dtype == np.float32
    inf = np.isinf(expected)
    assert np.array_equal(np.isinf(actual), inf), "infinities differ"
    assert np.array_equal(actual[inf], expected[inf]), "signs of infinities differ"
    assert not np.isnan(actual).any(), "engine produced NaN"
    err = np.abs(np.where(inf, 0.0, actual) - np.where(inf, 0.0, expected))
    bound = RTOL * np.abs(scale) + 1e-30
    bad = ~inf & (err > bound)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} values off; first at {at}: engine {actual[at]!r}, "
            f"oracle {expected[at]!r}, |error| {err[at]:.3g} > {bound[at]:.3g}"
        )


@st.composite
def per_axis(draw: st.DrawFn, rank: int, lo: int, hi: int) -> tuple[Any, tuple[int, ...]]:
    """An int (the same on every axis) or a list of `rank` ints: (spec value, per-axis tuple)."""
    if draw(st.booleans()):
        v = draw(st.integers(lo, hi))
        return v, (v,) * rank
    values = draw(st.lists(st.integers(lo, hi), min_size=rank, max_size=rank))
    return values, tuple(values)


def data(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def span(k: int, d: int) -> int:
    return d * (k - 1) + 1


# --------------------------------------------------------------------------------- convolution


@dataclass
class ConvCfg:
    rank: int
    in_channels: int
    out_channels: int
    groups: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: Any  # spec value: int, list, "same" or "valid"
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    layer: dict[str, Any]


@st.composite
def conv_cfg(draw: st.DrawFn, loose: bool = False) -> ConvCfg:
    """A conv layer's fields; `loose` also draws groups that do not divide the channels and
    padding='same' with stride > 1 (for the validation properties)."""
    rank = draw(st.integers(1, 3))
    if loose:
        groups = draw(st.integers(1, 4))
        cin = draw(st.integers(1, MAX_CHANNELS))
        cout = draw(st.integers(1, MAX_CHANNELS))
    else:
        groups = draw(st.integers(1, MAX_CHANNELS))
        cin = groups * draw(st.integers(1, MAX_CHANNELS // groups))
        cout = groups * draw(st.integers(1, MAX_CHANNELS // groups))
    k_spec, kernel = draw(per_axis(rank, 1, MAX_KERNEL[rank]))
    d_spec, dilation = draw(per_axis(rank, 1, 2))
    kind = draw(st.sampled_from(["default", "valid", "int", "int", "list", "list", "same", "same"]))
    if kind == "same" and not loose:
        s_spec, stride = 1, (1,) * rank
    else:
        s_spec, stride = draw(per_axis(rank, 1, 3))
    layer = {
        "name": "c",
        "type": f"conv{rank}d",
        "in_channels": cin,
        "out_channels": cout,
        "kernel_size": k_spec,
        "stride": s_spec,
        "dilation": d_spec,
        "groups": groups,
    }
    if kind == "same":
        lo, hi = (tuple(v) for v in oracle.same_padding(kernel, dilation))
        padding: Any = "same"
    elif kind in ("default", "valid"):
        lo = hi = (0,) * rank
        padding = kind
    elif kind == "int":
        padding = draw(st.integers(0, 3))
        lo = hi = (padding,) * rank
    else:
        padding = draw(st.lists(st.integers(0, 3), min_size=rank, max_size=rank))
        lo = hi = tuple(padding)
    if padding != "default":
        layer["padding"] = padding
    return ConvCfg(rank, cin, cout, groups, kernel, stride, dilation, padding, lo, hi, layer)


@st.composite
def conv_cases(draw: st.DrawFn) -> Case:
    cfg = draw(conv_cfg())
    lengths = []
    for axis in range(cfg.rank):
        need = span(cfg.kernel[axis], cfg.dilation[axis]) - cfg.lo[axis] - cfg.hi[axis]
        least = max(1, need)
        lengths.append(draw(st.integers(least, max(least, MAX_SPATIAL[cfg.rank]))))
    bias = draw(st.booleans())
    cfg.layer["bias"] = bias
    batch, seed = draw(st.integers(1, 3)), draw(st.integers(0, 2**32 - 1))
    in_shape = (cfg.in_channels, *lengths)
    weights = {
        "c.weight": data(seed + 1, (cfg.out_channels, cfg.in_channels // cfg.groups, *cfg.kernel))
    }
    if bias:
        weights["c.bias"] = data(seed + 2, (cfg.out_channels,))
    return Case(cfg.layer, in_shape, weights, data(seed, (batch, *in_shape)), cfg)


@settings(BASE, max_examples=400)
@given(conv_cases())
def test_conv_matches_oracle(case: Case) -> None:
    cfg: ConvCfg = case.cfg
    w, b = case.weights["c.weight"], case.weights.get("c.bias")
    geometry = (cfg.stride, cfg.dilation, cfg.lo, cfg.hi, cfg.groups)
    expected = oracle.conv_nd(case.x, w, b, *geometry)
    scale = oracle.conv_nd(np.abs(case.x), np.abs(w), None if b is None else np.abs(b), *geometry)
    arch, actual = run_engine(case)
    assert_matches(arch, actual, expected, scale)


@settings(BASE, max_examples=400)
@given(conv_cfg(loose=True), st.data())
def test_conv_validation_agrees_with_oracle(cfg: ConvCfg, draw: st.DataObject) -> None:
    """Around the edge (padded input one pixel short of the kernel's span, or just enough),
    the spec is rejected exactly when PyTorch would refuse the conv."""
    lengths = []
    for axis in range(cfg.rank):
        need = span(cfg.kernel[axis], cfg.dilation[axis]) - cfg.lo[axis] - cfg.hi[axis]
        lengths.append(draw.draw(st.integers(max(1, need - 2), max(1, need + 1))))
    problems = oracle.conv_problems(
        lengths,
        cfg.in_channels,
        cfg.out_channels,
        cfg.kernel,
        cfg.stride,
        cfg.dilation,
        "same" if cfg.padding == "same" else cfg.lo,
        cfg.groups,
    )
    arch = accepted(cfg.layer, (cfg.in_channels, *lengths))
    assert (arch is not None) == (not problems), f"service accepted={arch is not None}, {problems}"
    if arch is not None:
        out = [
            oracle.conv_out_len(n, k, s, d, a, b)
            for n, k, s, d, a, b in zip(
                lengths, cfg.kernel, cfg.stride, cfg.dilation, cfg.lo, cfg.hi, strict=True
            )
        ]
        assert tuple(arch.output_shape) == (cfg.out_channels, *out)


# ------------------------------------------------------------------------------------ pooling


@dataclass
class PoolCfg:
    rank: int
    mode: str
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool
    count_include_pad: bool
    layer: dict[str, Any]

    def out_len(self, axis: int, length: int) -> int:
        k, s, p, d = (self.kernel[axis], self.stride[axis], self.padding[axis], self.dilation[axis])
        return oracle.pool_out_len(length, k, s, p, d, self.ceil_mode)

    def problems(self, lengths: tuple[int, ...]) -> list[str]:
        return oracle.pool_problems(
            lengths,
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.mode,
        )

    def small_avg3d(self, lengths: tuple[int, ...]) -> bool:
        """An avgpool3d input shorter than the kernel on some axis: PyTorch refuses it, convserve
        accepts it (as ONNX does); the values are checked against the oracle all the same."""
        return (
            self.mode == "avg"
            and self.rank == 3
            and any(n < k for n, k in zip(lengths, self.kernel, strict=True))
        )


@st.composite
def pool_cfg(draw: st.DrawFn, loose: bool = False) -> PoolCfg:
    """A pooling layer's fields; padding up to half the kernel size (PyTorch's limit), or if
    loose up to one more than half the dilated window, past both PyTorch's and the natural one."""
    rank = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(["max", "avg"]))
    k_spec, kernel = draw(per_axis(rank, 1, MAX_KERNEL[rank]))
    layer: dict[str, Any] = {"name": "p", "type": f"{mode}pool{rank}d", "kernel_size": k_spec}
    dilation = (1,) * rank
    if mode == "max":
        d_spec, dilation = draw(per_axis(rank, 1, 2))
        if any(d > 1 for d in dilation) or draw(st.booleans()):
            layer["dilation"] = d_spec
    stride = kernel
    if draw(st.booleans()):
        layer["stride"], stride = draw(per_axis(rank, 1, 3))
    padding = tuple(
        draw(st.integers(0, span(k, d) // 2 + 1 if loose else k // 2))
        for k, d in zip(kernel, dilation, strict=True)
    )
    if any(padding) or draw(st.booleans()):
        layer["padding"] = padding[0] if len(set(padding)) == 1 else list(padding)
    ceil_mode = draw(st.booleans())
    layer["ceil_mode"] = ceil_mode
    count_include_pad = True
    if mode == "avg":
        count_include_pad = draw(st.booleans())
        layer["count_include_pad"] = count_include_pad
    return PoolCfg(
        rank, mode, kernel, stride, padding, dilation, ceil_mode, count_include_pad, layer
    )


@st.composite
def pool_cases(draw: st.DrawFn) -> Case:
    cfg = draw(pool_cfg())
    lengths = []
    for axis in range(cfg.rank):
        least = next(n for n in range(1, 64) if cfg.out_len(axis, n) >= 1)
        lengths.append(draw(st.integers(least, max(least, MAX_SPATIAL[cfg.rank]))))
    channels, batch = draw(st.integers(1, MAX_CHANNELS)), draw(st.integers(1, 3))
    in_shape = (channels, *lengths)
    seed = draw(st.integers(0, 2**32 - 1))
    return Case(cfg.layer, in_shape, {}, data(seed, (batch, *in_shape)), cfg)


@settings(BASE, max_examples=500)
@given(pool_cases())
def test_pool_matches_oracle(case: Case) -> None:
    cfg: PoolCfg = case.cfg
    if cfg.mode == "max":
        args = (cfg.kernel, cfg.stride, cfg.padding, cfg.dilation, cfg.ceil_mode)
        expected = oracle.max_pool_nd(case.x, *args)
        scale = expected
    else:
        args = (cfg.kernel, cfg.stride, cfg.padding, cfg.ceil_mode, cfg.count_include_pad)
        expected = oracle.avg_pool_nd(case.x, *args)
        scale = oracle.avg_pool_nd(np.abs(case.x), *args)
    arch, actual = run_engine(case)
    assert_matches(arch, actual, expected, scale)


@settings(BASE, max_examples=500)
@given(pool_cfg(loose=True), st.data())
def test_pool_validation_agrees_with_oracle(cfg: PoolCfg, draw: st.DataObject) -> None:
    """Around the edge of producing any output, and with padding up to one more than allowed,
    the spec is rejected exactly when PyTorch would refuse the pooling (except for avgpool3d's
    input-size rule, tested separately below)."""
    lengths = []
    for axis in range(cfg.rank):
        least = next(n for n in range(1, 64) if cfg.out_len(axis, n) >= 1)
        lengths.append(draw.draw(st.integers(max(1, least - 2), least + 1)))
    lengths = tuple(lengths)
    assume(not cfg.small_avg3d(lengths))
    problems = cfg.problems(lengths)
    arch = accepted(cfg.layer, (2, *lengths))
    assert (arch is not None) == (not problems), f"service accepted={arch is not None}, {problems}"
    if arch is not None:
        out = tuple(cfg.out_len(axis, n) for axis, n in enumerate(lengths))
        assert tuple(arch.output_shape) == (2, *out)


# ---------------------------------------------------------------------------------------- LRN


@st.composite
def lrn_cases(draw: st.DrawFn) -> Case:
    rank = draw(st.integers(1, 3))
    channels = draw(st.integers(1, MAX_CHANNELS))
    lengths = draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    layer = {
        "name": "n",
        "type": "lrn",
        "size": draw(st.integers(1, 7)),
        "alpha": draw(st.floats(1e-4, 2.0)),
        "beta": draw(st.floats(0.25, 1.5)),
        "k": draw(st.floats(0.5, 3.0)),
    }
    in_shape = (channels, *lengths)
    batch, seed = draw(st.integers(1, 3)), draw(st.integers(0, 2**32 - 1))
    return Case(layer, in_shape, {}, data(seed, (batch, *in_shape)))


@settings(BASE, max_examples=150)
@given(lrn_cases())
def test_lrn_matches_oracle(case: Case) -> None:
    lay = case.layer
    expected = oracle.local_response_norm(case.x, lay["size"], lay["alpha"], lay["beta"], lay["k"])
    arch, actual = run_engine(case)
    assert_matches(arch, actual, expected, expected)


# ------------------------------------------------------------------------------ known answers

INF = float("inf")

#: Worked by hand from PyTorch's definitions: (layer, one 1-channel 1-d input, weights, output).
KNOWN = [
    # ceil_mode's last window hangs past the input and averages its single real value
    (
        {"type": "avgpool1d", "kernel_size": 2, "ceil_mode": True},
        [1, 2, 3, 4, 5],
        {},
        [1.5, 3.5, 5],
    ),
    # windows start at -1, 1, 3; the last covers x[3], one padding pixel and one overhang pixel
    (
        {"type": "avgpool1d", "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
        [1, 2, 3, 4],
        {},
        [1, 3, 2],
    ),
    (
        {
            "type": "avgpool1d",
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "ceil_mode": True,
            "count_include_pad": False,
        },
        [1, 2, 3, 4],
        {},
        [1.5, 3, 4],
    ),
    # the only window's taps (-1 and 1) both miss the 1-pixel input: PyTorch gives -inf
    (
        {"type": "maxpool1d", "kernel_size": 2, "stride": 1, "dilation": 2, "padding": 1},
        [7],
        {},
        [-INF],
    ),
    # y[i] = x[i-1] - x[i+1]
    (
        {"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 2, "dilation": 2}
        | {"padding": 1, "bias": False},
        [1, 2, 3, 4],
        {"weight": [[[1, -1]]]},
        [-2, -2, -2, 3],
    ),
    # 'same' with an even kernel pads the extra pixel at the end: y[i] = x[i] - x[i+1] + 10
    (
        {"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 2}
        | {"padding": "same"},
        [1, 2, 3, 4],
        {"weight": [[[1, -1]]], "bias": [10]},
        [9, 9, 9, 14],
    ),
]


@pytest.mark.parametrize(("layer", "x", "weights", "expected"), KNOWN)
def test_engine_known_answers(layer: dict, x: list, weights: dict, expected: list) -> None:
    arrays = {f"k.{k}": np.array(v, dtype=np.float32) for k, v in weights.items()}
    case = Case({"name": "k", **layer}, (1, len(x)), arrays, np.array([[x]], dtype=np.float32))
    _, actual = run_engine(case)
    np.testing.assert_allclose(actual[0, 0], expected, rtol=1e-6)


def test_oracle_known_answers() -> None:
    x = np.array([[[1, 2, 3, 4]]], dtype=np.float32)
    avg = oracle.avg_pool_nd
    np.testing.assert_allclose(avg(x, [3], [2], [1], True, True)[0, 0], [1, 3, 2])
    np.testing.assert_allclose(avg(x, [3], [2], [1], True, False)[0, 0], [1.5, 3, 4])
    five = np.array([[[1, 2, 3, 4, 5]]], dtype=np.float32)
    np.testing.assert_allclose(avg(five, [2], [2], [0], True, True)[0, 0], [1.5, 3.5, 5])
    np.testing.assert_array_equal(oracle.max_pool_nd(x[..., :1], [2], [1], [1], [2], False), -INF)
    w = np.array([[[1, -1]]], dtype=np.float32)
    conv = oracle.conv_nd(x, w, None, [1], [2], [1], [1], 1)
    np.testing.assert_allclose(conv[0, 0], [-2, -2, -2, 3])
    lo, hi = oracle.same_padding([2], [1])
    assert (lo, hi) == ([0], [1])
    conv = oracle.conv_nd(x, w, np.array([10.0]), [1], [1], lo, hi, 1)
    np.testing.assert_allclose(conv[0, 0], [9, 9, 9, 14])
    # groups=2: each output channel sees only its own input channel
    two = np.array([[[1, 2], [3, 4]]], dtype=np.float32)
    grouped = oracle.conv_nd(two, np.array([[[2]], [[3]]]), None, [1], [1], [0], [0], 2)
    np.testing.assert_allclose(grouped[0], [[2, 4], [9, 12]])
    # size 2 looks at the channel before and this one: divisors (1 + energy)^1
    lrn = oracle.local_response_norm(np.array([[[1], [2], [3]]]), size=2, alpha=2, beta=1, k=1)
    np.testing.assert_allclose(lrn[0, :, 0], [1 / 2, 2 / 6, 3 / 14])
    # output sizes: floor and ceil, and ceil_mode's rule that the last window starts in range
    assert oracle.pool_out_len(5, 2, 2, 0, 1, False) == 2
    assert oracle.pool_out_len(5, 2, 2, 0, 1, True) == 3
    assert oracle.pool_out_len(5, 2, 2, 1, 1, True) == 3  # a 4th window would start at 6 >= 5+1
    assert oracle.conv_out_len(7, 3, 2, 2, 1, 1) == 3


# ------------------------------------------------------------- configurations PyTorch refuses


@pytest.mark.parametrize(
    ("layer", "in_shape"),
    [
        # PyTorch checks a pool's padding against half the kernel size (k // 2 = 1), not half
        # the dilated window (5 // 2 = 2): "pad should be smaller than or equal to half of
        # kernel size, but got padW = 2, padH = 2, kW = 3, kH = 3".
        ({"type": "maxpool1d", "kernel_size": 3, "dilation": 2, "padding": 2}, (1, 5)),
        ({"type": "maxpool2d", "kernel_size": 3, "dilation": 2, "padding": 2}, (1, 5, 5)),
        (
            {"type": "maxpool3d", "kernel_size": 3, "dilation": 2, "padding": [2, 0, 0]},
            (1, 5, 5, 5),
        ),
        # Deliberately not mirrored: PyTorch's avg_pool3d kernel alone refuses an input shorter
        # than the kernel on some axis ("input image (T: 2 ...) smaller than kernel size").
        # convserve accepts it (as ONNX does): the output is well defined and matches the oracle.
    ],
)
def test_pool_rejected_where_pytorch_refuses(layer: dict[str, Any], in_shape: tuple) -> None:
    rank = len(in_shape) - 1
    as_tuple = lambda v: tuple(v) if isinstance(v, list) else (v,) * rank  # noqa: E731
    kernel = as_tuple(layer["kernel_size"])
    problems = oracle.pool_problems(
        in_shape[1:],
        kernel,
        kernel,
        as_tuple(layer.get("padding", 0)),
        as_tuple(layer.get("dilation", 1)),
        False,
        layer["type"][:3],
    )
    assert problems, "the oracle should refuse this configuration"
    with pytest.raises(SpecError):
        build({"name": "p", **layer}, in_shape)
