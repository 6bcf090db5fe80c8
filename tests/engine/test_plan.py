"""The plan's mechanics: folding, in-place steps, freed buffers, captures, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from service.architecture import Architecture
from service.engine import compile_plan
from service.errors import InvalidInput
from service.kernels import avg_pool_divisor, conv_kernel, pool_kernel
from tests.helpers import oracle, spec_of

RNG = np.random.default_rng(0)


def randomised(arch, seed=0):
    """Random weights with non-trivial batch-norm statistics, so folding has work to do."""
    rng = np.random.default_rng(seed)
    w = arch.random_weights(seed)
    for k in w:
        if k.endswith(("running_mean", "bias")):
            w[k] = rng.normal(0, 0.5, w[k].shape).astype(np.float32)
        elif k.endswith("running_var") or (k.endswith("weight") and w[k].ndim == 1):
            w[k] = rng.uniform(0.5, 2.0, w[k].shape).astype(np.float32)
    return w


def branchy_spec():
    """A conv read by two layers; a flatten (a view) whose source is also read elsewhere."""
    conv = {"type": "conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 3, "padding": 1}
    return spec_of(
        [4, 5, 5],
        {"name": "c1", **conv},
        {"name": "bn", "type": "batchnorm2d", "num_features": 4},
        {"name": "r1", "type": "relu"},  # may overwrite bn's output: nothing else reads it
        {"name": "c2", **conv},
        {"name": "t", "type": "tanh", "inputs": ["c2"]},  # c2 is read by t and by sum
        {"name": "sum", "type": "add", "inputs": ["t", "c2", "r1"]},
        {"name": "flat", "type": "flatten"},
        {"name": "s", "type": "sigmoid"},  # in place on flat would clobber sum, read by flat2
        {"name": "flat2", "type": "flatten", "inputs": ["sum"]},
        {"name": "out", "type": "add", "inputs": ["s", "flat2"]},
    )


def reference(x, w):
    """The branchy network written out by hand with the kernels, no plan."""

    def conv(name, v):
        one = (1, 1)
        kernel = conv_kernel(
            w[f"{name}.weight"], w[f"{name}.bias"], one, one, one, one, 1, v.shape[2:]
        )
        return kernel(v)

    c1 = conv("c1", x)
    scale = w["bn.weight"] / np.sqrt(w["bn.running_var"] + 1e-5)
    bn = (c1 - w["bn.running_mean"][:, None, None]) * scale[:, None, None] + w["bn.bias"][
        :, None, None
    ]
    r1 = np.maximum(bn, 0)
    c2 = conv("c2", r1)
    total = np.tanh(c2) + c2 + r1
    flat = total.reshape(len(x), -1)
    return 1 / (1 + np.exp(-flat)) + flat


def test_in_place_steps_never_clobber_a_buffer_still_read():
    arch = Architecture.from_spec(branchy_spec())
    w = randomised(arch)
    x = RNG.normal(size=(3, 4, 5, 5)).astype(np.float32)
    plan = compile_plan(arch, w, fuse_activations=False)
    steps = {s.name: s for s in plan.steps}
    assert steps["r1"].inplace  # over bn's output (folded into c1), read by nothing else
    assert not steps["t"].inplace  # c2 is still read by sum
    assert not steps["s"].inplace  # flat is a view of sum, which flat2 still reads
    assert steps["sum"].inplace and steps["out"].inplace  # adds write over their first input
    np.testing.assert_allclose(plan.run(x), reference(x, w), rtol=1e-5, atol=1e-5)


def test_an_activation_is_fused_into_its_conv_only_when_nothing_else_reads_the_conv():
    arch = Architecture.from_spec(branchy_spec())
    w = randomised(arch)
    x = RNG.normal(size=(3, 4, 5, 5)).astype(np.float32)
    plan = compile_plan(arch, w)
    steps = {s.name: s for s in plan.steps}
    assert steps["r1"].inputs == ("image",)  # c1, its folded bn and r1: one step
    assert "c1" not in steps and "bn" not in steps
    assert steps["t"].inputs == ("c2",)  # c2 is also read by sum: its tanh stays a step
    np.testing.assert_allclose(plan.run(x), reference(x, w), rtol=1e-5, atol=1e-5)
    # Asking for the pre-activation output keeps it apart.
    out, got = plan.run(x, capture=["bn"])
    assert "bn" in got
    np.testing.assert_allclose(out, plan.run(x), rtol=1e-5, atol=1e-6)


def test_an_add_keeps_its_first_input_while_a_later_layer_reads_it():
    conv = {"type": "conv2d", "in_channels": 2, "out_channels": 2, "kernel_size": 1}
    arch = Architecture.from_spec(
        spec_of(
            [2, 3, 3],
            {"name": "c", **conv},
            {"name": "r", "type": "relu"},
            {"name": "twice", "type": "add", "inputs": ["r", "r"]},  # r is read again below
            {"name": "thrice", "type": "add", "inputs": ["twice", "r"]},
        )
    )
    w = randomised(arch)
    plan = compile_plan(arch, w)
    steps = {s.name: s for s in plan.steps}
    assert not steps["twice"].inplace and steps["thrice"].inplace
    x = RNG.normal(size=(2, 2, 3, 3)).astype(np.float32)
    c = np.einsum("oc,nchw->nohw", w["c.weight"][:, :, 0, 0], x) + w["c.bias"][:, None, None]
    np.testing.assert_allclose(plan.run(x), 3 * np.maximum(c, 0), rtol=1e-5, atol=1e-6)


def test_batchnorm_is_folded_and_agrees_with_the_unfolded_plan():
    arch = Architecture.from_spec(branchy_spec())
    w = randomised(arch, seed=3)
    folded = compile_plan(arch, w, fuse_activations=False)
    plain = compile_plan(arch, w, fold_batchnorm=False, fuse_activations=False)
    assert "bn" in {s.name for s in folded.steps} and "c1" not in {s.name for s in folded.steps}
    assert {"bn", "c1"} <= {s.name for s in plain.steps}
    x = RNG.normal(size=(2, 4, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(folded.run(x), plain.run(x), rtol=1e-5, atol=1e-5)


def test_capture_returns_layers_hidden_by_folding_and_in_place_steps():
    arch = Architecture.from_spec(branchy_spec())
    w = randomised(arch, seed=4)
    x = RNG.normal(size=(2, 4, 5, 5)).astype(np.float32)
    plan = compile_plan(arch, w)
    out, acts = plan.run(x, capture=["c1", "bn", "flat"])
    plain = compile_plan(arch, w, fold_batchnorm=False, keep=["c1", "bn", "flat"])
    ref_out, ref = plain.run(x, capture=["c1", "bn", "flat"])
    for name in ("c1", "bn", "flat"):
        np.testing.assert_allclose(acts[name], ref[name], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    # The capture ran unfolded, the plain run folded: equal up to float32 rounding.
    np.testing.assert_allclose(out, plan.run(x), rtol=1e-5, atol=1e-5)


def test_the_callers_input_is_never_modified():
    arch = Architecture.from_spec(spec_of([2, 3], {"name": "r", "type": "relu"}))
    x = RNG.normal(size=(4, 2, 3)).astype(np.float32)
    before = x.copy()
    y = compile_plan(arch).run(x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(y, np.maximum(before, 0))


def test_batch_results_equal_single_results(lenet_spec):
    arch = Architecture.from_spec(lenet_spec)
    plan = compile_plan(arch, seed=2)
    x = RNG.normal(size=(5, 1, 32, 32)).astype(np.float32)
    batch = plan.run(x)
    for i in range(5):
        np.testing.assert_allclose(batch[i : i + 1], plan.run(x[i : i + 1]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(batch.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize(
    ("kernel", "stride", "pad", "groups"),
    [
        (3, (2, 1), (1, 2), 1),
        (3, (1, 1), (1, 1), 3),
        (1, (1, 1), (0, 0), 3),
        (1, (2, 2), (0, 0), 1),
    ],
)
@pytest.mark.parametrize("scratch", [1, 3 * 4 * 9 * 40, 5 * 4 * 9 * 81, 1 << 30])
def test_conv_chunking_never_changes_the_result(kernel, stride, pad, groups, scratch):
    """Every way of cutting the work (a row at a time, bands of rows, whole images, several images
    side by side in one GEMM, a 1×1 with no columns) gives the oracle's answer."""
    x = RNG.normal(size=(7, 6, 9, 10)).astype(np.float32)
    w = RNG.normal(size=(6, 6 // groups, kernel, kernel)).astype(np.float32)
    b = RNG.normal(size=6).astype(np.float32)
    geometry = (stride, (1, 2), pad, pad)
    expected = oracle.conv_nd(x, w, b, *geometry, groups)
    got = conv_kernel(w, b, *geometry, groups, x.shape[2:], scratch)(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scratch", [1, 4 * 99 * 4, 1 << 30])
def test_pooling_a_group_of_maps_at_a_time_never_changes_the_result(scratch):
    x = RNG.normal(size=(3, 5, 9, 11)).astype(np.float32)
    kernel, stride, pad, dilation = (3, 2), (2, 2), (1, 1), (1, 2)
    expected = oracle.max_pool_nd(x, kernel, stride, pad, dilation, True)  # ceil_mode
    out_sp = expected.shape[2:]
    got = pool_kernel(x.shape[2:], kernel, stride, pad, out_sp, "max", None, dilation, scratch)(x)
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    expected = oracle.avg_pool_nd(x, kernel, stride, pad, True, False)
    out_sp = expected.shape[2:]
    divisor = avg_pool_divisor(x.shape[2:], kernel, stride, pad, out_sp, False)
    got = pool_kernel(x.shape[2:], kernel, stride, pad, out_sp, "avg", divisor, None, scratch)(x)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_a_conv_epilogue_sees_every_output_value_once():
    x = RNG.normal(size=(5, 3, 12, 12)).astype(np.float32)
    w = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
    plain = conv_kernel(w, None, (1, 1), (1, 1), (1, 1), (1, 1), 1, (12, 12))(x)
    for scratch in (1, 4 * 27 * 30, 1 << 30):
        kernel = conv_kernel(w, None, (1, 1), (1, 1), (1, 1), (1, 1), 1, (12, 12), scratch,
                             epilogue=lambda y: np.add(y, 1, out=y))  # fmt: skip
        np.testing.assert_allclose(kernel(x), plain + 1, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 32, 32), (2, 1, 32), (1, 1, 28, 28), (3,)])
def test_input_shape_mismatch_is_an_invalid_input(lenet_spec, shape):
    plan = compile_plan(Architecture.from_spec(lenet_spec))
    with pytest.raises(InvalidInput, match=r"the model takes \[N, 1, 32, 32\]"):
        plan.run(np.zeros(shape, np.float32))


def test_capture_of_an_unknown_layer(lenet_spec):
    plan = compile_plan(Architecture.from_spec(lenet_spec))
    with pytest.raises(InvalidInput, match="no layer named 'conv9'"):
        plan.run(np.zeros((1, 1, 32, 32), np.float32), capture=["conv9"])


def test_buffers_are_freed_after_their_last_reader(lenet_spec):
    plan = compile_plan(Architecture.from_spec(lenet_spec))
    freed = [name for step in plan.steps for name in step.free]
    assert "image" not in freed  # the caller's array
    assert len(freed) == len(set(freed)) == len(plan.steps) - 1  # all but the output, once each
