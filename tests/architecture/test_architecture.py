"""Shapes, counts and receptive fields of validated architectures (the layer table)."""

from __future__ import annotations

import pytest

from service.architecture import Architecture
from tests.helpers import spec_of


def test_lenet_shapes_params_and_macs(lenet_spec):
    table = Architecture.from_spec(lenet_spec).table()
    rows = {r["name"]: r for r in table["layers"]}
    shapes = [tuple(r["output_shape"]) for r in table["layers"]]
    assert shapes == [
        (3, 28, 28), (3, 28, 28), (3, 14, 14),
        (6, 10, 10), (6, 10, 10), (6, 5, 5),
        (150,), (100,), (100,), (10,), (10,),
    ]  # fmt: skip
    assert [rows[n]["params"] for n in ("conv1", "conv2", "fc1", "fc2")] == [78, 456, 15_100, 1_010]
    # conv: out elements × in_channels/groups × kernel volume; linear: in × out.
    assert rows["conv1"]["macs"] == 3 * 28 * 28 * 1 * 25
    assert rows["conv2"]["macs"] == 6 * 10 * 10 * 3 * 25
    assert rows["fc1"]["macs"] == 150 * 100
    assert rows["pool1"]["macs"] == rows["relu1"]["macs"] == 0
    assert rows["conv2"]["weight_shapes"] == {"weight": [6, 3, 5, 5], "bias": [6]}
    assert rows["conv2"]["input_shapes"] == [[3, 14, 14]]
    assert rows["conv1"]["inputs"] == ["image"]
    totals = table["totals"]
    assert totals["params"] == 78 + 456 + 15_100 + 1_010
    assert totals["macs"] == 58_800 + 45_000 + 15_000 + 1_000
    assert totals["weight_bytes"] == 4 * totals["params"]
    outputs = 3 * 28 * 28 * 2 + 3 * 14 * 14 + 6 * 10 * 10 * 2 + 6 * 5 * 5 + 150 + 100 * 2 + 10 * 2
    assert totals["activation_bytes"] == 4 * outputs
    assert rows["conv2"]["explain"] == (
        "6 filters of 3×5×5, each spanning all 3 input maps → 6 maps of 10×10; 456 params"
    )


def test_lenet_receptive_fields(lenet_spec):
    rows = {
        r["name"]: r["receptive_field"]
        for r in Architecture.from_spec(lenet_spec).table()["layers"]
    }
    assert rows["conv1"] == {"size": [5, 5], "stride": [1, 1]}
    assert rows["pool1"] == {"size": [6, 6], "stride": [2, 2]}
    assert rows["conv2"] == {"size": [14, 14], "stride": [2, 2]}
    assert rows["pool2"] == {"size": [16, 16], "stride": [4, 4]}
    assert rows["fc1"]["size"] == [32, 32]  # a dense unit sees the whole image


def test_dilation_grows_the_receptive_field():
    arch = Architecture.from_spec(
        spec_of(
            [1, 32, 32],
            {"name": "a", "type": "conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 3},
            {"name": "b", "type": "conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 3,
             "dilation": 2, "stride": 2},
            {"name": "c", "type": "conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 3},
        )
    )  # fmt: skip
    rf = [n.rf for n in arch.nodes]
    assert [r.size for r in rf] == [(3, 3), (7, 7), (11, 11)]
    assert [r.stride for r in rf] == [(1, 1), (2, 2), (2, 2)]


def test_one_by_one_conv_mixes_channels():
    arch = Architecture.from_spec(
        spec_of([64, 7, 7], {"name": "mix", "type": "conv2d", "in_channels": 64,
                             "out_channels": 32, "kernel_size": 1})
    )  # fmt: skip
    row = arch.table()["layers"][0]
    assert row["params"] == 64 * 32 + 32
    assert row["macs"] == 7 * 7 * 64 * 32
    assert row["output_shape"] == [32, 7, 7]
    assert row["explain"].startswith("1×1 conv: 64→32 channel mix per pixel")


@pytest.mark.parametrize(
    ("groups", "weight"), [(1, [8, 4, 3, 3]), (2, [8, 2, 3, 3]), (4, [8, 1, 3, 3])]
)
def test_grouped_conv_weight_spans_its_group(groups, weight):
    arch = Architecture.from_spec(
        spec_of([4, 8, 8], {"name": "g", "type": "conv2d", "in_channels": 4, "out_channels": 8,
                            "kernel_size": 3, "groups": groups})
    )  # fmt: skip
    row = arch.table()["layers"][0]
    assert row["weight_shapes"]["weight"] == weight
    assert row["params"] == 8 * (4 // groups) * 9 + 8
    assert row["macs"] == 8 * 6 * 6 * (4 // groups) * 9


@pytest.mark.parametrize(
    ("padding", "kernel", "stride", "dilation", "length", "out"),
    [
        (0, 3, 1, 1, 10, 8),
        (1, 3, 2, 1, 10, 5),
        ("same", 4, 1, 1, 10, 10),
        ("same", 3, 1, 3, 10, 10),
        ("valid", 3, 1, 1, 10, 8),
        (2, 5, 3, 2, 11, 3),  # (11 + 4 - 8 - 1) // 3 + 1
    ],
)
def test_conv_output_size_follows_pytorch(padding, kernel, stride, dilation, length, out):
    arch = Architecture.from_spec(
        spec_of([1, length], {"name": "c", "type": "conv1d", "in_channels": 1, "out_channels": 1,
                              "kernel_size": kernel, "stride": stride, "padding": padding,
                              "dilation": dilation})
    )  # fmt: skip
    assert arch.output_shape == (1, out)


@pytest.mark.parametrize(
    ("length", "kernel", "stride", "padding", "ceil", "out"),
    [
        (112, 3, 2, 0, True, 56),  # GoogLeNet's pools: 112 → 56 with ceil_mode
        (112, 3, 2, 0, False, 55),
        (5, 2, 2, 1, True, 3),  # ceil would give 4, but that window would start in the padding
        (6, 3, 2, 1, True, 4),
        (7, 3, 3, 0, True, 3),
        (7, 3, 3, 0, False, 2),
    ],
)
def test_pool_output_size_follows_pytorch_ceil_mode(length, kernel, stride, padding, ceil, out):
    arch = Architecture.from_spec(
        spec_of([2, length], {"name": "p", "type": "maxpool1d", "kernel_size": kernel,
                              "stride": stride, "padding": padding, "ceil_mode": ceil})
    )  # fmt: skip
    assert arch.output_shape == (2, out)


def test_pool_stride_defaults_to_kernel():
    arch = Architecture.from_spec(
        spec_of([3, 9, 9], {"name": "p", "type": "avgpool2d", "kernel_size": 3})
    )
    assert arch.output_shape == (3, 3, 3)


def residual_spec():
    conv = {"type": "conv2d", "in_channels": 8, "out_channels": 8, "kernel_size": 3, "padding": 1}
    return spec_of(
        [8, 6, 6],
        {"name": "stem", "type": "relu"},
        {"name": "block.conv1", **conv},
        {"name": "block.bn1", "type": "batchnorm2d", "num_features": 8},
        {"name": "block.relu", "type": "relu"},
        {"name": "block.conv2", **conv},
        {"name": "block.add", "type": "add", "inputs": ["block.conv2", "stem"]},
        {"name": "pool", "type": "global_avgpool"},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "linear", "in_features": 8, "out_features": 3},
    )


def test_residual_graph_and_batchnorm_counts():
    table = Architecture.from_spec(residual_spec()).table()
    rows = {r["name"]: r for r in table["layers"]}
    assert rows["block.add"]["inputs"] == ["block.conv2", "stem"]
    assert rows["block.add"]["input_shapes"] == [[8, 6, 6], [8, 6, 6]]
    assert rows["pool"]["output_shape"] == [8, 1, 1]
    # Batch norm trains a scale and shift per channel; its running statistics are not params.
    assert rows["block.bn1"]["params"] == 16
    assert set(rows["block.bn1"]["weight_shapes"]) == {
        "weight",
        "bias",
        "running_mean",
        "running_var",
    }
    assert rows["block.add"]["receptive_field"]["size"] == [5, 5]


def test_inception_concat_and_layers_listed_out_of_order():
    branch = {"type": "conv2d", "in_channels": 4, "kernel_size": 1, "inputs": ["image"]}
    spec = spec_of(
        [4, 9, 9],
        {"name": "cat", "type": "concat", "inputs": ["b1", "b3", "bp"]},
        {"name": "b1", **branch, "out_channels": 2},
        {"name": "b3", **branch, "out_channels": 5, "kernel_size": 3, "padding": 1},
        {"name": "pool", "type": "maxpool2d", "kernel_size": 3, "stride": 1, "padding": 1,
         "inputs": ["image"]},
        {"name": "bp", "type": "conv2d", "in_channels": 4, "out_channels": 3, "kernel_size": 1},
        output="cat",
    )  # fmt: skip
    arch = Architecture.from_spec(spec)
    assert arch.output_shape == (10, 9, 9)
    order = [n.name for n in arch.nodes]
    assert order.index("cat") == len(order) - 1
    assert order.index("pool") < order.index("bp")


def test_labels_and_preprocess_are_kept(lenet_spec):
    arch = Architecture.from_spec(lenet_spec)
    assert arch.labels == [str(i) for i in range(10)]
    assert arch.image_preprocess["resize"] == [32, 32]
    assert arch.input_name == "image"


def test_conv3d_and_batchnorm1d_on_vectors():
    arch = Architecture.from_spec(
        spec_of(
            [2, 4, 8, 8],
            {"name": "c", "type": "conv3d", "in_channels": 2, "out_channels": 4,
             "kernel_size": [3, 3, 3], "padding": [1, 0, 0]},
            {"name": "p", "type": "maxpool3d", "kernel_size": [1, 2, 2]},
            {"name": "f", "type": "flatten"},
            {"name": "fc", "type": "linear", "in_features": 4 * 4 * 3 * 3, "out_features": 5},
            {"name": "bn", "type": "batchnorm1d", "num_features": 5},
        )
    )  # fmt: skip
    assert [n.out_shape for n in arch.nodes] == [(4, 4, 6, 6), (4, 4, 3, 3), (144,), (5,), (5,)]
    assert arch.nodes[0].macs == 4 * 4 * 6 * 6 * 2 * 27
