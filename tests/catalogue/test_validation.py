"""Every validation rule: the spec is refused, and the message names the layer and the numbers."""

from __future__ import annotations

import pytest

from service.architecture import Architecture, Limits
from tests.helpers import only_problem, problems_of, spec_of


def conv(name, cin, cout, k=3, **kw):
    return {"name": name, "type": "conv2d", "in_channels": cin, "out_channels": cout,
            "kernel_size": k, **kw}  # fmt: skip


def test_kernel_depth_message_is_the_one_in_api_md(lenet_spec):
    lenet_spec["layers"][3]["in_channels"] = 1
    p = only_problem(lenet_spec)
    assert (p.layer, p.field) == ("conv2", "in_channels")
    assert p.message == (
        "conv2 expects in_channels=1 but pool1 produces 3 feature maps (3×14×14): every conv2 "
        "filter must span all 3 input channels, so its weight is 6×3×5×5"
    )


def test_kernel_depth_against_the_model_input():
    p = only_problem(spec_of([3, 8, 8], conv("c", 1, 4)))
    assert (
        "c expects in_channels=1 but the input 'image' produces 3 feature maps (3×8×8)" in p.message
    )
    assert "its weight is 4×3×3×3" in p.message


def test_grouped_kernel_depth_explains_the_group_share():
    p = only_problem(spec_of([8, 8, 8], conv("g", 4, 8, groups=2)))
    assert p.field == "in_channels"
    assert "with groups=2 every g filter spans the 4 channels of its group" in p.message
    assert "its weight is 8×4×3×3" in p.message


@pytest.mark.parametrize(
    ("cin", "cout", "what"), [(6, 8, "in_channels=6"), (8, 6, "out_channels=6")]
)
def test_groups_must_divide_channels(cin, cout, what):
    found = problems_of(spec_of([cin, 8, 8], conv("g", cin, cout, groups=4)))
    msgs = [p.message for p in found if p.field == "groups"]
    assert len(msgs) == 1
    assert f"g has {what}, which groups=4 does not divide" in msgs[0]


def test_linear_width_must_equal_the_flattened_size(lenet_spec):
    lenet_spec["layers"][7]["in_features"] = 120
    p = only_problem(lenet_spec)
    assert (p.layer, p.field) == ("fc1", "in_features")
    assert "fc1 expects in_features=120 but flatten produces 150 values" in p.message
    assert "so its weight is 100×150" in p.message


def test_linear_on_feature_maps_asks_for_a_flatten(lenet_spec):
    del lenet_spec["layers"][6]  # the flatten
    p = only_problem(lenet_spec)
    assert p.layer == "fc1"
    assert "fc1 needs a flat vector of in_features=150 values but pool2 produces 6×5×5" in p.message
    assert "add a flatten layer" in p.message


def test_all_errors_are_collected_including_after_a_bad_layer(lenet_spec):
    lenet_spec["layers"][3]["in_channels"] = 1  # conv2
    lenet_spec["layers"][7]["in_features"] = 120  # fc1, downstream of conv2
    lenet_spec["layers"][9]["out_features"] = 11  # fc2: now 11 scores for 10 labels
    found = problems_of(lenet_spec)
    assert [(p.layer, p.field) for p in found] == [
        ("conv2", "in_channels"),
        ("fc1", "in_features"),
        (None, "labels"),
    ]
    assert "10 labels given but the output prob produces 11 class scores" in found[2].message


def test_batchnorm_num_features():
    p = only_problem(spec_of([16, 4, 4], {"name": "bn", "type": "batchnorm2d", "num_features": 8}))
    assert (p.layer, p.field) == ("bn", "num_features")
    assert (
        "bn expects num_features=8 but the input 'image' produces 16 channels (16×4×4)" in p.message
    )


def test_add_operands_must_match():
    spec = spec_of(
        [4, 8, 8],
        conv("a", 4, 4, padding=1),
        conv("b", 4, 8, inputs=["image"], padding=1),
        {"name": "sum", "type": "add", "inputs": ["a", "b"]},
    )
    p = only_problem(spec)
    assert p.layer == "sum"
    assert "a produces 4×8×8, b produces 8×8×8" in p.message


def test_concat_spatial_dims_must_match():
    spec = spec_of(
        [4, 8, 8],
        conv("a", 4, 4),
        conv("b", 4, 2, inputs=["image"], padding=1),
        {"name": "cat", "type": "concat", "inputs": ["a", "b"]},
    )
    p = only_problem(spec)
    assert p.layer == "cat"
    assert "all but the channel count must match" in p.message
    assert "a produces 4×6×6, b produces 2×8×8" in p.message


def test_conv_window_that_does_not_fit():
    p = only_problem(spec_of([1, 5, 5], conv("big", 1, 2, k=7)))
    assert (p.layer, p.field) == ("big", "kernel_size")
    assert "big's 7×7 kernel spans 7×7 pixels but the input 'image' gives 5×5 (+0×0" in p.message


def test_dilated_conv_window_that_does_not_fit():
    p = only_problem(spec_of([1, 5, 5], conv("d", 1, 2, k=3, dilation=3)))
    assert "spans 7×7 pixels" in p.message


def test_pool_window_that_does_not_fit():
    p = only_problem(spec_of([1, 3, 3], {"name": "p", "type": "maxpool2d", "kernel_size": 4}))
    assert p.layer == "p"
    assert "4×4 window does not fit" in p.message


def test_pool_padding_at_most_half_the_window():
    spec = spec_of([1, 8, 8], {"name": "p", "type": "avgpool2d", "kernel_size": 2, "padding": 2})
    p = only_problem(spec)
    assert (p.layer, p.field) == ("p", "padding")
    assert "p pads 2×2 pixels but its window is 2×2" in p.message
    assert "padding may be at most half the kernel (1×1, as in PyTorch)" in p.message


def test_rank_mismatch_conv2d_fed_a_signal():
    p = only_problem(spec_of([3, 100], conv("c", 3, 4)))
    assert p.layer == "c"
    assert "c is a conv2d and needs a C×H×W input (2 spatial dimensions)" in p.message
    assert "produces 3×100 (1 spatial dimension)" in p.message


def test_same_padding_needs_stride_one():
    p = only_problem(spec_of([1, 8, 8], conv("c", 1, 1, padding="same", stride=2)))
    assert (p.layer, p.field) == ("c", "padding")
    assert "stride 1" in p.message


def test_unknown_type_lists_the_known_types():
    p = only_problem(spec_of([1, 8, 8], {"name": "x", "type": "conv4d"}))
    assert (p.layer, p.field) == ("x", "type")
    assert "unknown layer type 'conv4d'" in p.message
    assert "conv2d" in p.message and "maxpool3d" in p.message and "lrn" in p.message


def test_duplicate_names():
    p = only_problem(
        spec_of([1, 8, 8], {"name": "r", "type": "relu"}, {"name": "r", "type": "relu"})
    )
    assert (p.layer, p.field) == ("r", "name")
    assert "already used by layers[0]" in p.message


def test_layer_named_like_the_input():
    p = only_problem(spec_of([1, 8, 8], {"name": "image", "type": "relu"}))
    assert "already used by the input's name" in p.message


def test_unknown_input_reference():
    p = only_problem(spec_of([1, 8, 8], {"name": "r", "type": "relu", "inputs": ["nope"]}))
    assert (p.layer, p.field) == ("r", "inputs")
    assert (
        "r reads 'nope', which is neither the input 'image' nor a layer of this spec" in p.message
    )


def test_cycle():
    spec = spec_of(
        [1, 8, 8],
        {"name": "a", "type": "relu", "inputs": ["image"]},
        {"name": "b", "type": "add", "inputs": ["a", "c"]},
        {"name": "c", "type": "relu", "inputs": ["b"]},
    )
    p = only_problem(spec)
    assert "layers b, c depend on each other in a cycle" in p.message


def test_dangling_layer_output():
    spec = spec_of(
        [1, 8, 8],
        {"name": "side", "type": "relu"},
        {"name": "main", "type": "sigmoid", "inputs": ["image"]},
    )
    p = only_problem(spec)
    assert p.layer == "side"
    assert "side's output is never used" in p.message and "'main'" in p.message


def test_output_must_name_a_layer():
    p = only_problem(spec_of([1, 8, 8], {"name": "r", "type": "relu"}, output="prob"))
    assert p.field == "output"
    assert "'prob'" in p.message


def test_merge_layers_need_two_inputs():
    p = only_problem(spec_of([1, 8, 8], {"name": "s", "type": "add"}))
    assert (p.layer, p.field) == ("s", "inputs")
    assert "takes at least 2 inputs but is given 1" in p.message


def test_single_input_layers_refuse_two():
    spec = spec_of(
        [1, 8, 8],
        {"name": "a", "type": "relu"},
        {"name": "b", "type": "relu", "inputs": ["a", "image"]},
    )
    assert "takes exactly one input but is given 2" in only_problem(spec).message


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("kernel_size", [3, 3, 3], "a list of 2 such integers"),
        ("kernel_size", 0, "an integer ≥ 1"),
        ("stride", "2", "an integer ≥ 1"),
        ("padding", "full", "'same', 'valid'"),
        ("padding", -1, "integer ≥ 0"),
        ("in_channels", 1.5, "integer"),
        ("kernal_size", 3, "Unknown field"),
    ],
)
def test_field_errors_name_layer_and_field(field, value, fragment):
    layer = conv("c", 1, 2)
    layer[field] = value
    found = problems_of(spec_of([1, 8, 8], layer))
    p = next(p for p in found if p.field == field)
    assert p.layer == "c"
    assert p.message.startswith(f"c (conv2d): {field}:")
    assert fragment in p.message


def test_missing_required_field():
    found = problems_of(spec_of([1, 8, 8], {"name": "c", "type": "conv2d", "in_channels": 1}))
    assert {(p.layer, p.field) for p in found} == {("c", "out_channels"), ("c", "kernel_size")}
    assert all("Missing data for required field" in p.message for p in found)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ([], "a spec is a JSON object"),
        ({"input": {"shape": [1, 8, 8]}}, "layers"),
        ({"input": {"shape": [1, 8, 8]}, "layers": []}, "layers"),
        ({"input": {"shape": []}, "layers": [{"name": "r", "type": "relu"}]}, "input.shape"),
        ({"input": {"shape": [1, 8, 8]}, "layers": ["relu"]}, "layers[0] is not an object"),
        ({"input": {"shape": [1, 8, 8]}, "layers": [{"type": "relu"}]}, "layers[0]"),
    ],
)
def test_malformed_specs(spec, fragment):
    found = problems_of(spec)
    assert any(fragment in (p.message + str(p.field) + str(p.layer)) for p in found), found


def test_labels_need_a_vector_output():
    spec = spec_of([1, 8, 8], {"name": "r", "type": "relu"}, labels=["a", "b"])
    p = only_problem(spec)
    assert p.field == "labels" and "not a vector of class scores" in p.message


@pytest.mark.parametrize(
    ("pre", "fragment"),
    [
        ({"color": "RGB"}, "input.shape has 1 channels and color is RGB"),
        ({"resize": [28, 28]}, "preprocessing yields 28×28 images but input.shape is 1×32×32"),
        ({"resize_shorter": 36}, "add center_crop [32, 32]"),
        ({"mean": [0.1, 0.2]}, "give 1 or one per channel (1)"),
        ({"resize": [32, 32], "resize_shorter": 32}, "not both"),
        ({"std": [0]}, "std"),
    ],
)
def test_preprocess_must_produce_the_input_shape(lenet_spec, pre, fragment):
    lenet_spec["input"]["preprocess"] = pre
    found = problems_of(lenet_spec)
    assert any(fragment in p.message for p in found), [p.message for p in found]


def test_limits(lenet_spec):
    assert "the limit is 5" in only_problem(lenet_spec, Limits(max_layers=5)).message
    p = only_problem(lenet_spec, Limits(max_tensor_elements=2000))
    assert (
        p.layer == "conv1" and "3×28×28 = 2,352 values per image; the limit is 2,000" in p.message
    )
    p = only_problem(lenet_spec, Limits(max_macs=100_000))
    assert "119,800 multiply-adds per image; the limit is 100,000" in p.message
    Architecture.from_spec(
        lenet_spec, Limits(max_layers=11, max_tensor_elements=2352, max_macs=119_800)
    )


# -- errors that know the answer say it -----------------------------------------------------


@pytest.mark.parametrize(
    "layer, field, expected",
    [
        ({"type": "conv2d", "out_channels": 4, "kernel_size": 3}, "in_channels",
         "lacks in_channels: the input 'image' produces 3 feature maps (3×8×8), so in_channels "
         'is 3 (add "in_channels": 3)'),
        ({"type": "batchnorm2d"}, "num_features",
         'produces 3 channels (3×8×8), so num_features is 3 (add "num_features": 3)'),
    ],
    ids=["conv", "batchnorm"],
)  # fmt: skip
def test_a_missing_field_the_input_decides_is_named_with_its_value(layer, field, expected):
    p = only_problem(spec_of([3, 8, 8], {"name": "first", **layer}))
    assert (p.layer, p.field) == ("first", field)
    assert expected in p.message


def test_a_missing_in_features_is_given_and_the_layers_after_still_checked():
    spec = spec_of(
        [3, 8, 8],
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "linear", "out_features": 10},
        {"name": "fc2", "type": "linear", "in_features": 12, "out_features": 2},
    )
    found = problems_of(spec)
    assert [(p.layer, p.field) for p in found] == [("fc", "in_features"), ("fc2", "in_features")]
    assert 'so in_features is 192 (add "in_features": 192)' in found[0].message
    assert "fc2 expects in_features=12 but fc produces 10 values" in found[1].message


def test_a_missing_field_after_a_broken_layer_is_still_reported():
    spec = spec_of(
        [3, 8, 8],
        {"name": "c1", "type": "conv2d", "in_channels": 5, "out_channels": 4, "kernel_size": 3,
         "stride": "fast"},
        {"name": "c2", "type": "conv2d", "out_channels": 4, "kernel_size": 3},
    )  # fmt: skip
    found = {(p.layer, p.field): p.message for p in problems_of(spec)}
    assert "Missing data for required field" in found[("c2", "in_channels")]


def test_channels_last_input_shape_says_the_layout_is_channels_first():
    p = only_problem(spec_of([32, 32, 3], conv("conv1", 3, 6)))
    assert "must span all 32 input channels" in p.message
    assert "input.shape is channels-first" in p.message and "are [3, 32, 32]" in p.message


def test_an_input_shape_with_the_batch_dimension_says_to_drop_it():
    p = only_problem(spec_of([1, 3, 32, 32], conv("conv1", 3, 6)))
    assert "leaves out the batch dimension" in p.message
    assert "write [3, 32, 32], not [1, 3, 32, 32]" in p.message


def test_weight_problems_are_not_headed_as_spec_problems(client, lenet_spec, capsys, tmp_path):
    """The spec is fine; the weights are not: the title, type and CLI headline say so."""
    import io
    import json

    import numpy as np

    from service.cli import main
    from service.weights import dump_npz

    w = Architecture.from_spec(lenet_spec).random_weights()
    w["conv2.weight"] = np.zeros((6, 1, 5, 5), np.float32)
    data = dump_npz(w)
    resp = client.post(
        "/v1/models/m/versions",
        data={"spec": json.dumps(lenet_spec), "weights": (io.BytesIO(data), "w.npz")},
    )
    body = resp.get_json()
    assert resp.status_code == 422 and body["title"] == "Invalid weights"
    assert body["type"].endswith("invalid-weights") and body["errors"][0]["layer"] == "conv2"
    (tmp_path / "s.json").write_text(json.dumps(lenet_spec))
    (tmp_path / "w.npz").write_bytes(data)
    assert main(["inspect", str(tmp_path / "s.json"), "--weights", str(tmp_path / "w.npz")]) == 2
    err = capsys.readouterr().err
    assert "error: the weights do not fit the spec" in err and "spec is invalid" not in err
