"""Weights: .npz files are read without unpickling and checked array by array against the spec."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from service.architecture import Architecture
from service.errors import SpecError
from service.weights import dump_npz, load_npz
from tests.helpers import spec_of


@pytest.fixture
def lenet(lenet_spec):
    return Architecture.from_spec(lenet_spec)


def problems(arch, arrays):
    with pytest.raises(SpecError) as info:
        arch.check_weights(arrays)
    return info.value.problems


def test_random_weights_pass_their_own_check_and_round_trip(lenet):
    w = lenet.random_weights(seed=1)
    checked = lenet.check_weights(load_npz(dump_npz(w)))
    assert set(checked) == set(w)
    for k in w:
        np.testing.assert_array_equal(checked[k], w[k])
        assert checked[k].dtype == np.float32


def test_random_weights_are_seeded_he_normal(lenet):
    a, b, c = lenet.random_weights(0), lenet.random_weights(0), lenet.random_weights(1)
    np.testing.assert_array_equal(a["fc1.weight"], b["fc1.weight"])
    assert not np.array_equal(a["fc1.weight"], c["fc1.weight"])
    assert a["fc1.weight"].std() == pytest.approx(np.sqrt(2 / 150), rel=0.05)
    assert not a["fc1.bias"].any()


def test_missing_array_names_it_and_its_shape(lenet):
    w = lenet.random_weights()
    del w["conv2.weight"]
    (p,) = problems(lenet, w)
    assert (p.layer, p.field) == ("conv2", "weight")
    assert "lack 'conv2.weight': conv2 needs a 6×3×5×5 array" in p.message
    assert "out_channels × in_channels/groups × kernel_size" in p.message


def test_wrong_shape_says_expected_and_actual(lenet):
    w = lenet.random_weights()
    w["conv2.weight"] = np.zeros((6, 1, 5, 5), np.float32)
    w["fc1.weight"] = np.zeros((150, 100), np.float32)
    found = problems(lenet, w)
    assert [p.layer for p in found] == ["conv2", "fc1"]
    assert "'conv2.weight' has shape 6×1×5×5 but conv2 needs 6×3×5×5" in found[0].message
    assert "'fc1.weight' has shape 150×100 but fc1 needs 100×150 (out_features × in_features)" in (
        found[1].message
    )


def test_unexpected_arrays(lenet):
    w = lenet.random_weights()
    w["conv1.running_mean"] = np.zeros(3, np.float32)
    w["conv9.weight"] = np.zeros(3, np.float32)
    found = problems(lenet, w)
    assert "'conv1.running_mean' is not a weight of conv1: a conv2d stores weight, bias" in (
        found[0].message
    )
    assert "'conv9.weight' belongs to no layer: no layer is named 'conv9'" in found[1].message


def test_non_finite_and_non_float_values(lenet):
    w = lenet.random_weights()
    w["fc2.bias"] = np.array([np.nan] + [0] * 9, np.float32)
    w["fc1.bias"] = np.full(100, 1e300)  # finite in float64, infinite in float32
    w["conv1.bias"] = np.array([1, 2, 3])  # integers are not weights
    found = {p.layer: p.message for p in problems(lenet, w)}
    assert "'fc2.bias' holds 1 value that is not finite" in found["fc2"]
    assert "'fc1.bias' holds 100 values that are not finite in float32" in found["fc1"]
    assert "'conv1.bias' holds int64 values" in found["conv1"]


def test_float64_state_dicts_are_cast(lenet):
    w = {k: v.astype(np.float64) for k, v in lenet.random_weights().items()}
    assert all(v.dtype == np.float32 for v in lenet.check_weights(w).values())


def test_batchnorm_accepts_pytorch_counter():
    arch = Architecture.from_spec(
        spec_of([4, 3, 3], {"name": "bn", "type": "batchnorm2d", "num_features": 4})
    )
    w = arch.random_weights()
    assert set(w) == {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}
    w["bn.num_batches_tracked"] = np.array(100, np.int64)
    assert set(arch.check_weights(w)) == {
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
    }
    w["bn.num_batches_tracked"] = np.array([1, 2])
    assert (
        "'bn.num_batches_tracked' has shape 2 but bn needs a scalar" in problems(arch, w)[0].message
    )


def test_object_arrays_are_never_unpickled():
    buf = io.BytesIO()
    np.savez(buf, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(SpecError, match="never unpickles"):
        load_npz(buf.getvalue())


@pytest.mark.parametrize("data", [b"not a zip", b"", np.lib.format.MAGIC_PREFIX + b"rest"])
def test_not_an_npz(data):
    with pytest.raises(SpecError, match="not an .npz file"):
        load_npz(data)


def test_zip_with_foreign_entries():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(SpecError, match="readme.txt"):
        load_npz(buf.getvalue())


def test_unpacked_size_is_bounded_before_decompressing():
    buf = io.BytesIO()
    np.savez_compressed(buf, big=np.zeros(1_000_000, np.float32))  # compresses to a few KB
    assert len(buf.getvalue()) < 100_000
    with pytest.raises(SpecError, match="the limit is 1,000,000 bytes"):
        load_npz(buf.getvalue(), max_bytes=1_000_000)


def npz_with_header(shape: tuple[int, ...], payload: bytes = b"\0" * 64) -> bytes:
    """An .npz whose one array's header claims `shape` of float32 but holds `payload`."""
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        npy, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("conv1.weight.npy", npy.getvalue() + payload)
    return buf.getvalue()


def test_an_npy_header_claiming_an_impossible_shape_is_refused_before_allocating():
    with pytest.raises(SpecError, match=r"claims shape \(100000, 100000, 100000\) of float32"):
        load_npz(npz_with_header((100_000, 100_000, 100_000)))
    with pytest.raises(SpecError, match="holds 64 bytes"):
        load_npz(npz_with_header((4, 5)))  # 80 bytes claimed, 64 held
    arrays = load_npz(npz_with_header((4, 4)))  # exactly what it holds
    assert arrays["conv1.weight"].shape == (4, 4)


def test_a_damaged_npy_header_is_a_422_not_a_500():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': nope}   \n")
    with pytest.raises(SpecError, match="is not a readable .npy array"):
        load_npz(buf.getvalue())
