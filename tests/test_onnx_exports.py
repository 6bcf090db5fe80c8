"""Models written in plain PyTorch and exported with its default exporter (the dynamo exporter of
PyTorch 2.13, external data included) register and predict as PyTorch does.

tests/fixtures/make_onnx_exports.py wrote the fixtures; these tests never need PyTorch.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="ONNX import is the onnx extra")

from service.architecture import Architecture  # noqa: E402
from service.engine import compile_plan  # noqa: E402
from service.errors import SpecError  # noqa: E402
from service.onnx_import import import_onnx  # noqa: E402

HERE = Path(__file__).parent / "fixtures" / "onnx"
ZOO = ["resnet", "mobilenet_v2", "vgg", "squeezenet", "googlenet", "meanhead"]
VARIANTS = ["resnet_dynamic_batch", "resnet_unoptimized"]


def files(name: str) -> tuple[bytes, dict[str, bytes]]:
    return (HERE / f"{name}.onnx").read_bytes(), {
        f"{name}.onnx.data": (HERE / f"{name}.onnx.data").read_bytes()
    }


def run(spec: dict, weights: dict, x: np.ndarray) -> np.ndarray:
    arch = Architecture.from_spec(spec)
    return compile_plan(arch, arch.check_weights(weights)).run(x)


@pytest.mark.parametrize("name", ZOO + VARIANTS)
def test_a_default_export_imports_and_matches_pytorch(name):
    spec, weights = import_onnx(*files(name))
    io_ = np.load(HERE / f"{name}_io.npz")
    got = run(spec, weights, io_["x"])
    np.testing.assert_allclose(got, io_["y"], rtol=1e-5, atol=1e-5)


def test_the_exporters_idioms_become_layers():
    """AdaptiveAvgPool2d(1) exports as ReduceMean (keepdims), x.mean((2, 3)) as ReduceMean
    without, flatten as Reshape to [N, features], Linear as Gemm, ReLU6 as Clip."""
    resnet, _ = import_onnx(*files("resnet"))
    kinds = {layer["name"]: layer["type"] for layer in resnet["layers"]}
    assert kinds["avgpool"] == "global_avgpool" and kinds["fc"] == "linear"
    assert kinds["view"] == "flatten"
    head, _ = import_onnx(*files("meanhead"))
    assert [layer["type"] for layer in head["layers"]][-4:] == [
        "global_avgpool", "flatten", "linear", "softmax",
    ]  # fmt: skip
    mobile, _ = import_onnx(*files("mobilenet_v2"))
    assert sum(layer["type"] == "relu6" for layer in mobile["layers"]) == 7


def test_layer_names_are_the_pytorch_module_paths_deduplicated():
    spec, weights = import_onnx(*files("resnet"))
    names = [layer["name"] for layer in spec["layers"]]
    assert len(names) == len(set(names))
    # the block's shared ReLU module is called twice: PyTorch's own numbering tells them apart
    for name in ("conv1", "layer1.0.conv1", "layer1.0.relu", "layer1.0.relu_1",
                 "layer2.0.downsample.0", "fc"):  # fmt: skip
        assert name in names, names
    assert "fc.weight" in weights and "layer2.0.downsample.0.weight" in weights
    unoptimized, _ = import_onnx(*files("resnet_unoptimized"))  # batch norms not folded
    assert "layer1.0.bn1" in [layer["name"] for layer in unoptimized["layers"]]


def test_refused_nodes_are_reported_once_without_follow_on_errors():
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(files("meanhead")[0])
    for node in model.graph.node:
        if node.op_type == "ReduceMean":
            del node.input[1:]  # no axes: a mean over every axis, batch included
    with pytest.raises(SpecError) as info:
        import_onnx(model.SerializeToString(), files("meanhead")[1])
    (problem,) = info.value.problems
    assert "reduces over every axis" in problem.message and "x.mean((2, 3))" in problem.message


# -- over HTTP, as a user would send them ------------------------------------------------------


def test_register_with_data_parts_labels_and_preprocess_then_predict(client):
    model, data = files("resnet")
    labels = "\n".join(f"class {i}" for i in range(10)) + "\n"
    preprocess = {"color": "RGB", "resize": [32, 32], "scale": 1 / 255, "mean": [0.5] * 3,
                  "std": [0.25] * 3}  # fmt: skip
    resp = client.post(
        "/v1/models/byom/versions",
        data={
            "onnx": (io.BytesIO(model), "resnet.onnx"),
            "onnx_data": (io.BytesIO(data["resnet.onnx.data"]), "resnet.onnx.data"),
            "labels": (io.BytesIO(labels.encode()), "labels.txt"),
            "preprocess": json.dumps(preprocess),
        },
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    doc = resp.get_json()
    assert doc["labels"][3] == "class 3" and doc["input"]["preprocess"]["mean"] == [0.5] * 3
    x = np.load(HERE / "resnet_io.npz")
    out = client.post("/v1/models/byom/predict?top_k=1", json={"instances": x["x"].tolist()})
    assert out.status_code == 200
    top = [p["top"][0] for p in out.get_json()["predictions"]]
    assert [t["index"] for t in top] == np.argmax(x["y"], axis=1).tolist()
    assert top[0]["label"] == f"class {top[0]['index']}"


def test_register_a_zip_of_the_export(client):
    model, data = files("googlenet")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("googlenet.onnx", model)
        zf.writestr("googlenet.onnx.data", data["googlenet.onnx.data"])
    resp = client.post(
        "/v1/models/gnet/versions",
        data={"onnx": (io.BytesIO(buf.getvalue()), "googlenet.zip"), "labels": '["a", "b"]'},
    )
    # two labels for ten classes: validated like any spec, nothing stored
    assert resp.status_code == 422 and "labels" in resp.get_data(as_text=True)
    buf.seek(0)
    labels = json.dumps([f"c{i}" for i in range(10)])
    resp = client.post(
        "/v1/models/gnet/versions",
        data={"onnx": (io.BytesIO(buf.getvalue()), "googlenet.zip"), "labels": labels},
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)


def test_the_export_without_its_data_file_says_how_to_send_it(client):
    model, _ = files("vgg")
    resp = client.post("/v1/models/vgg/versions", data={"onnx": (io.BytesIO(model), "vgg.onnx")})
    assert resp.status_code == 422
    detail = resp.get_json()["detail"]
    assert "'vgg.onnx.data'" in detail and "onnx_data" in detail and "zip" in detail


def test_labels_and_preprocess_parts_belong_to_onnx_uploads(client, lenet_spec):
    from tests.helpers import lenet_weights

    resp = client.post(
        "/v1/models/m/versions",
        data={
            "spec": json.dumps(lenet_spec),
            "weights": (io.BytesIO(lenet_weights()), "w.npz"),
            "labels": "a\nb\n",
        },
    )
    assert resp.status_code == 400 and "a spec carries its own `labels`" in resp.get_data(
        as_text=True
    )


def test_the_cli_imports_an_export_with_labels(tmp_path, capsys):
    from service.cli import main

    for f in HERE.glob("squeezenet.onnx*"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "labels.txt").write_text("\n".join(str(i) for i in range(10)))
    assert main(["import", str(tmp_path / "squeezenet.onnx"), "--labels",
                 str(tmp_path / "labels.txt")]) == 0  # fmt: skip
    spec = json.loads((tmp_path / "squeezenet.json").read_text())
    assert spec["labels"][9] == "9" and "features.3.expand3x3" in capsys.readouterr().out
