"""ONNX import: graphs built with onnx.helper, run by convserve's engine and by ONNX's own
reference evaluator, must agree; what cannot run is refused naming the node."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX import is the onnx extra")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from service.architecture import Architecture  # noqa: E402
from service.engine import compile_plan  # noqa: E402
from service.errors import SpecError  # noqa: E402
from service.onnx_import import import_onnx  # noqa: E402

RNG = np.random.default_rng(0)


def init(name: str, *shape: int, scale: float = 0.5) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def positive(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.uniform(0.5, 1.5, shape).astype(np.float32), name)


def model(nodes, in_shape, inits=(), out_name="y", opset=17) -> bytes:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)],
        initializer=list(inits),
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8

    return m.SerializeToString()


def types(spec: dict) -> list[str]:
    return [layer["type"] for layer in spec["layers"]]


def check(data: bytes, in_shape, batch: int = 2, rtol: float = 1e-5) -> dict:
    """Import, validate, run both ways, compare; returns the spec."""
    spec, weights = import_onnx(data)
    arch = Architecture.from_spec(spec)
    plan = compile_plan(arch, arch.check_weights(weights))
    x = RNG.standard_normal((batch, *in_shape)).astype(np.float32)
    (want,) = ReferenceEvaluator(onnx.load_from_string(data)).run(None, {"x": x})
    got = plan.run(x)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=rtol, atol=1e-5)
    return spec


def test_conv_pool_gemm_classifier():
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node(
            "MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1
        ),
        helper.make_node("Flatten", ["p1"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["g"], transB=1),
        helper.make_node("Softmax", ["g"], ["y"], axis=1),
    ]
    inits = [init("w1", 4, 3, 3, 3), init("b1", 4), init("w2", 10, 4 * 4 * 4), init("b2", 10)]
    spec = check(model(nodes, [3, 15, 15], inits), [3, 15, 15])
    assert types(spec) == ["conv2d", "relu", "maxpool2d", "flatten", "linear", "softmax"]
    assert spec["layers"][2]["ceil_mode"] is True and spec["input"]["shape"] == [3, 15, 15]


@pytest.mark.parametrize(
    "attrs",
    [
        {"pads": [0, 1, 2, 0]},  # asymmetric: before (0, 1), after (2, 0)
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
        {"auto_pad": "VALID"},
        {"dilations": [2, 2], "pads": [2, 2, 2, 2]},
        {"group": 2, "pads": [1, 1, 1, 1]},
    ],
    ids=["asymmetric", "same-upper", "same-lower", "valid", "dilated", "grouped"],
)
def test_conv_padding_modes(attrs):
    groups = attrs.get("group", 1)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], **attrs)]
    check(model(nodes, [4, 9, 10], [init("w", 6, 4 // groups, 3, 3)]), [4, 9, 10])


def test_conv1d_and_conv3d():
    one = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 2])]
    check(model(one, [2, 12], [init("w", 3, 2, 4), init("b", 3)]), [2, 12])
    three = [helper.make_node("Conv", ["x", "w"], ["y"], strides=[1, 2, 2])]
    check(model(three, [2, 5, 6, 6], [init("w", 3, 2, 2, 3, 3)]), [2, 5, 6, 6])


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool_padding_and_ceil(count_include_pad):
    nodes = [
        helper.make_node(
            "AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
            ceil_mode=1, count_include_pad=count_include_pad,
        )
    ]  # fmt: skip
    spec = check(model(nodes, [2, 8, 8]), [2, 8, 8])
    assert spec["layers"][0]["count_include_pad"] is bool(count_include_pad)


def test_global_pools_batchnorm_lrn_and_activations():
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["bn"], epsilon=1e-3),
        helper.make_node("LRN", ["bn"], ["l"], size=3, alpha=1e-3, beta=0.75, bias=2.0),
        helper.make_node("LeakyRelu", ["l"], ["lr"], alpha=0.1),
        helper.make_node("Clip", ["lr", "zero", "six"], ["c"]),
        helper.make_node("Sigmoid", ["c"], ["s1"]),
        helper.make_node("Tanh", ["s1"], ["t"]),
        helper.make_node("GlobalMaxPool", ["t"], ["gm"]),
        helper.make_node("Identity", ["gm"], ["y"]),
    ]
    inits = [
        positive("s", 4), init("bb", 4), init("m", 4), positive("v", 4),
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
        numpy_helper.from_array(np.array(6, np.float32), "six"),
    ]  # fmt: skip
    # batch ≥ channels: onnx.reference's LRN loops over the batch axis where it means channels,
    # so with fewer images than channels it leaves the last channels unnormalised.
    spec = check(model(nodes, [4, 6, 6], inits), [4, 6, 6], batch=4)
    assert types(spec) == [
        "batchnorm2d", "lrn", "leaky_relu", "relu6", "sigmoid", "tanh", "global_maxpool",
    ]  # fmt: skip


def test_residual_add_concat_and_matmul_bias():
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ra"]),
        helper.make_node("Conv", ["ra", "w2"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["b", "x"], ["res"]),
        helper.make_node("Conv", ["res", "w3"], ["c"]),
        helper.make_node("Concat", ["res", "c"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"]),
        helper.make_node("Reshape", ["gap", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "wm"], ["mm"]),
        helper.make_node("Add", ["mm", "bm"], ["y"]),
    ]
    inits = [
        init("w1", 3, 3, 3, 3), init("w2", 3, 3, 3, 3), init("w3", 2, 3, 1, 1),
        numpy_helper.from_array(np.array([0, -1], np.int64), "shape"),
        init("wm", 5, 7), init("bm", 7),
    ]  # fmt: skip
    spec = check(model(nodes, [3, 6, 6], inits), [3, 6, 6])
    assert types(spec) == [
        "conv2d", "relu", "conv2d", "add", "conv2d", "concat", "global_avgpool", "flatten",
        "linear",
    ]  # fmt: skip
    assert spec["layers"][-1]["bias"] is True  # the Add folded into the MatMul


@pytest.mark.parametrize("opset", [11, 13, onnx.defs.onnx_opset_version()])
def test_opsets_from_11_to_the_newest(opset):
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Dropout", ["c"], ["d"]),
        helper.make_node("Flatten", ["d"], ["f"]),
        helper.make_node("Gemm", ["f", "wg"], ["g"], alpha=0.5),
        helper.make_node("Softmax", ["g"], ["y"], axis=1),
    ]
    check(
        model(nodes, [2, 4, 4], [init("w", 3, 2, 3, 3), init("wg", 48, 5)], opset=opset), [2, 4, 4]
    )


def test_unsupported_ops_are_named_with_the_node():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="stem"),
        helper.make_node("Resize", ["c", "", "scales"], ["r"], name="upsample_1"),
        helper.make_node("Erf", ["r"], ["y"], name="gelu_part"),
    ]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    with pytest.raises(SpecError) as info:
        import_onnx(model(nodes, [1, 4, 4], [init("w", 1, 1, 1, 1), scales]))
    found = {(p.layer, p.field) for p in info.value.problems}
    assert found == {("upsample_1", "op_type"), ("gelu_part", "op_type")}
    assert "is a Resize, which convserve cannot run" in info.value.problems[0].message


@pytest.mark.parametrize(
    "nodes, inits, fragment",
    [
        ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[0, 0, 1, 1])], [],
         "pools pad both sides equally"),
        ([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])],
         [numpy_helper.from_array(np.array(-1, np.float32), "lo"),
          numpy_helper.from_array(np.array(1, np.float32), "hi")], "clips to [-1.0, 1.0]"),
        ([helper.make_node("Conv", ["x", "x"], ["y"])], [], "computes its weight at run time"),
        ([helper.make_node("Softmax", ["x"], ["y"], axis=2)], [], "axis 2"),
    ],
    ids=["asymmetric-pool", "clip", "dynamic-weight", "softmax-axis"],
)  # fmt: skip
def test_refusals_explain_themselves(nodes, inits, fragment):
    with pytest.raises(SpecError) as info:
        import_onnx(model(nodes, [2, 4, 4], inits))
    assert fragment in info.value.problems[0].message, info.value.problems


def test_not_onnx_and_old_opsets():
    with pytest.raises(SpecError, match="not an ONNX model"):
        import_onnx(b"\x00\x01 definitely not protobuf \xff" * 3)
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    with pytest.raises(SpecError, match="opset 9; convserve imports opsets 11"):
        import_onnx(model(nodes, [2, 4], opset=9))


def test_dynamic_input_sizes_are_refused():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(SpecError, match="every dimension but the batch fixed"):
        import_onnx(m.SerializeToString())


# -- a real export, the API and the CLI ------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_pytorch_export_matches_pytorch_and_the_reference_evaluator():
    """tests/fixtures/make_onnx_fixture.py exported a small residual net from PyTorch 2.13."""
    data = (FIXTURES / "tiny_resnet.onnx").read_bytes()
    fixture = np.load(FIXTURES / "tiny_resnet_io.npz")
    spec, weights = import_onnx(data)
    arch = Architecture.from_spec(spec)
    got = compile_plan(arch, arch.check_weights(weights)).run(fixture["x"])
    np.testing.assert_allclose(got, fixture["y"], rtol=1e-5, atol=1e-6)
    (ref,) = ReferenceEvaluator(onnx.load_from_string(data)).run(None, {"image": fixture["x"]})
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert spec["input"] == {"name": "image", "shape": [3, 20, 20]}
    assert sum(layer["type"] == "add" for layer in spec["layers"]) == 2


def test_register_an_onnx_file_over_http(client):
    data = (FIXTURES / "tiny_resnet.onnx").read_bytes()
    resp = client.post(
        "/v1/models/tiny/versions",
        data={"onnx": (io.BytesIO(data), "tiny.onnx"), "description": "from torch"},
    )
    assert resp.status_code == 201, resp.data
    doc = resp.get_json()
    assert doc["version"] == 1 and doc["input"]["shape"] == [3, 20, 20]
    x = np.load(FIXTURES / "tiny_resnet_io.npz")
    out = client.post("/v1/models/tiny/predict?top_k=5", json={"instances": x["x"].tolist()})
    assert out.status_code == 200
    best = [p["top"][0]["index"] for p in out.get_json()["predictions"]]
    assert best == np.argmax(x["y"], axis=1).tolist()


def test_onnx_registration_errors(client):
    bad = model([helper.make_node("Erf", ["x"], ["y"], name="erf_1")], [2, 4])
    resp = client.post("/v1/models/m/versions", data={"onnx": (io.BytesIO(bad), "m.onnx")})
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["errors"][0]["layer"] == "erf_1" and "Erf" in body["errors"][0]["message"]
    both = {
        "onnx": (io.BytesIO(bad), "m.onnx"),
        "spec": (io.BytesIO(b"{}"), "s.json"),
    }
    resp = client.post("/v1/models/m/versions", data=both)
    assert resp.status_code == 400 and "either an onnx file or spec and weights" in resp.get_data(
        as_text=True
    )
    assert client.get("/v1/models/m").status_code == 404  # nothing stored


def test_the_cli_writes_spec_and_weights(tmp_path, capsys):
    from service.cli import main
    from service.weights import load_npz

    src = tmp_path / "tiny.onnx"
    src.write_bytes((FIXTURES / "tiny_resnet.onnx").read_bytes())
    assert main(["import", str(src)]) == 0
    out = capsys.readouterr().out
    assert "Total params" in out and "tiny.json" in out
    spec = json.loads((tmp_path / "tiny.json").read_text())
    Architecture.from_spec(spec).check_weights(load_npz((tmp_path / "tiny.npz").read_bytes()))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(model([helper.make_node("Erf", ["x"], ["y"], name="erf_1")], [2, 4]))
    assert main(["import", str(bad)]) == 2
    assert "erf_1" in capsys.readouterr().err


# -- external data: only ever from what was uploaded ------------------------------------------


def external_model(location: str, values: np.ndarray, offset: int = 0) -> bytes:
    """y = x·W + b whose bias b is kept in external file `location` at `offset`."""
    bias = numpy_helper.from_array(values.astype(np.float32), "fc.bias")
    bias.ClearField("raw_data")
    bias.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", values.size * 4)):
        entry = bias.external_data.add()
        entry.key, entry.value = key, str(value)
    nodes = [
        helper.make_node("MatMul", ["x", "fc.weight"], ["mm"]),
        helper.make_node("Add", ["mm", "fc.bias"], ["y"]),
    ]
    return model(nodes, [3], [init("fc.weight", 3, 4), bias])


LOCATIONS = ["secret.bin", "./secret.bin", "../secret.bin", "/etc/hostname", "sub/../secret.bin"]


@pytest.mark.parametrize("location", LOCATIONS)
def test_external_data_is_never_read_from_the_servers_disk(client, tmp_path, monkeypatch, location):
    """onnx's loader resolves `location` against the working directory: a model could make the
    server read its own files (and GET .../weights hand them out). It must be 422, naming it."""
    work = tmp_path / "cwd" / "deeper"
    work.mkdir(parents=True)
    for where in (work, work.parent):
        (where / "secret.bin").write_bytes(b"TOP SECRET KEY!!" * 4)
    monkeypatch.chdir(work)
    data = external_model(location, np.zeros(4))
    resp = client.post("/v1/models/leak/versions", data={"onnx": (io.BytesIO(data), "m.onnx")})
    assert resp.status_code == 422, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["errors"][0]["field"] == "onnx_data"
    assert repr(location) in body["detail"] and "was not uploaded" in body["detail"]
    assert client.get("/v1/models/leak").status_code == 404
    with pytest.raises(SpecError, match="not uploaded"):
        import_onnx(data)


def test_external_data_comes_from_onnx_data_parts(client):
    bias = np.arange(4, dtype=np.float32) + 0.5
    blob = b"\x00" * 8 + bias.tobytes()  # at an offset, as exporters pack many tensors in one file
    data = external_model("m.onnx.data", bias, offset=8)
    parts = {"onnx": (io.BytesIO(data), "m.onnx"), "onnx_data": (io.BytesIO(blob), "m.onnx.data")}
    resp = client.post("/v1/models/ext/versions", data=parts)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    stored = np.load(io.BytesIO(client.get("/v1/models/ext/versions/1/weights").data))
    names = [k for k in stored.files if k.endswith(".bias")]
    np.testing.assert_array_equal(stored[names[0]], bias)
    # a data file too short for what the model says is in it
    short = (io.BytesIO(blob[:12]), "m.onnx.data")
    parts = {"onnx": (io.BytesIO(data), "m.onnx"), "onnx_data": short}
    resp = client.post("/v1/models/ext/versions", data=parts)
    assert resp.status_code == 422 and "holds 12 bytes" in resp.get_json()["detail"]
    # data parts without a model
    resp = client.post(
        "/v1/models/ext/versions", data={"onnx_data": (io.BytesIO(blob), "m.onnx.data")}
    )
    assert resp.status_code == 400 and "onnx_data" in resp.get_json()["detail"]


def test_external_data_comes_from_a_zip(client):
    bias = np.full(4, 2.0, np.float32)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("export/m.onnx", external_model("m.onnx.data", bias))
        zf.writestr("export/m.onnx.data", bias.tobytes())
    url = "/v1/models/zipped/versions"
    resp = client.post(url, data={"onnx": (io.BytesIO(buf.getvalue()), "m.zip")})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "no model here")
    resp = client.post(url, data={"onnx": (io.BytesIO(empty.getvalue()), "m.zip")})
    assert resp.status_code == 422 and "exactly one .onnx file" in resp.get_json()["detail"]


def test_the_cli_reads_data_files_given_or_beside_the_model_only(tmp_path, capsys):
    from service.cli import main

    bias = np.ones(4, np.float32)
    (tmp_path / "m.onnx").write_bytes(external_model("m.onnx.data", bias))
    assert main(["import", str(tmp_path / "m.onnx")]) == 2
    assert "'m.onnx.data', which was not uploaded" in capsys.readouterr().err
    (tmp_path / "m.onnx.data").write_bytes(bias.tobytes())
    assert main(["import", str(tmp_path / "m.onnx")]) == 0  # beside it, as the exporter wrote it
    other = tmp_path / "elsewhere.bin"
    other.write_bytes(bias.tobytes())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.onnx").write_bytes(external_model("../elsewhere.bin", bias))
    assert main(["import", str(tmp_path / "sub" / "m.onnx")]) == 2  # not a path the model makes up
    capsys.readouterr()
    assert main(["import", str(tmp_path / "sub" / "m.onnx"), "--data", str(other)]) == 0


def test_constant_chains_fold_and_huge_ones_are_refused():
    """Shape → Gather → Unsqueeze → Concat → Cast → Reshape: a flatten computed the long way, and a
    bias built from Constant + Identity + Cast; a ConstantOfShape asking for 10⁹ values is a 422."""
    i64 = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Cast", ["target"], ["target64"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["x", "target64"], ["flat"]),
        helper.make_node(
            "Constant",
            [],
            ["b16"],
            value=numpy_helper.from_array(np.arange(4, dtype=np.float16), "v"),
        ),  # fmt: skip
        helper.make_node("Identity", ["b16"], ["bi"]),
        helper.make_node("Cast", ["bi"], ["b"], to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["flat", "w", "b"], ["y"], transB=1),
    ]
    inits = [i64("zero", 0), i64("axes0", [0]), i64("minus1", [-1]), init("w", 4, 2 * 3 * 3)]
    spec = check(model(nodes, [2, 3, 3], inits), [2, 3, 3])
    assert types(spec) == ["flatten", "linear"]
    bomb = [
        helper.make_node("ConstantOfShape", ["huge"], ["c"]),
        helper.make_node("Add", ["x", "c"], ["y"]),
    ]
    with pytest.raises(SpecError, match="too large"):
        import_onnx(model(bomb, [2], [i64("huge", [10**9])]))
    outer = [  # [65536, 1] × [1, 65536]: 4·10⁹ values from two small constants
        helper.make_node("Mul", ["col", "row"], ["c"]),
        helper.make_node("Add", ["x", "c"], ["y"]),
    ]
    col = numpy_helper.from_array(np.ones((65536, 1), np.float32), "col")
    row = numpy_helper.from_array(np.ones((1, 65536), np.float32), "row")
    with pytest.raises(SpecError, match="too large"):
        import_onnx(model(outer, [2], [col, row]))
