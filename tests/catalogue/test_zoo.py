"""The model zoo (models/*.json, written by models/make_zoo.py) against published figures.

Counting convention (service.catalogue): `params` are the trained parameters (conv and linear
weights and biases, batch-norm weight and bias, not the running statistics); `macs` count conv
(output elements × in_channels/groups × kernel volume) and linear (in × out) multiply-adds only.
That is what torchvision's `_ops` (GFLOPS, computed as multiply-adds of convs and linears) and
the papers below count, so parameters must match exactly and multiply-adds within 0.5% (the
published figures are rounded to 3-4 significant digits).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from service.architecture import Architecture
from service.engine import compile_plan

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_zoo", MODELS / "make_zoo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_zoo = _load_generator()


@dataclass(frozen=True)
class Published:
    params: int  # exact
    macs: float  # multiply-adds per image, as published (rounded)
    source: str


def _torchvision(weights: str, params: int, gflops: float) -> Published:
    return Published(
        params,
        gflops * 1e9,
        f'torchvision {weights}.IMAGENET1K_V1.meta: "num_params": {params}, "_ops": {gflops} '
        "(GFLOPS, which torchvision computes as multiply-adds)",
    )


PUBLISHED: dict[str, Published] = {
    "alexnet": _torchvision("AlexNet_Weights", 61_100_840, 0.714),
    "alexnet-grouped": Published(
        60_965_224,
        724e6,
        # Parameters: the sum over Caffe's bvlc_alexnet deploy.prototxt (conv1 34,944; conv2
        # 307,456; conv3 885,120; conv4 663,936; conv5 442,624; fc6 37,752,832; fc7 16,781,312;
        # fc8 4,097,000), the usual "60,965,224 parameters" of the 227×227 grouped AlexNet.
        # Multiply-adds: Sze, Chen, Yang, Emer, "Efficient Processing of Deep Neural Networks:
        # A Tutorial and Survey", Proc. IEEE 105(12), 2017, table of CNN models: AlexNet 724M
        # MACs in total (666M in the conv layers, as Chen et al., Eyeriss, ISSCC 2016, also
        # give, and 58.6M in the fully connected ones), 61M weights.
        "Caffe bvlc_alexnet (60,965,224 params); Sze et al. 2017, Proc. IEEE (724M MACs)",
    ),
    "vgg16": _torchvision("VGG16_Weights", 138_357_544, 15.47),
    "googlenet": _torchvision("GoogLeNet_Weights", 6_624_904, 1.498),
    "resnet18": _torchvision("ResNet18_Weights", 11_689_512, 1.814),
    "resnet50": _torchvision("ResNet50_Weights", 25_557_032, 4.089),
    "mobilenet_v1": Published(
        4_231_976,
        569e6,
        # Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
        # Applications", arXiv:1704.04861, Table 8 (1.0 MobileNet-224: 569 million mult-adds,
        # 4.2 million parameters). The exact parameter count is Keras'
        # keras.applications.MobileNet(alpha=1.0, input_shape=(224, 224, 3)).summary():
        # "Trainable params: 4,231,976" (total 4,253,864, of which 21,888 are the batch-norm
        # moving means and variances), also TF-slim's table for mobilenet_v1_1.0_224.
        "Howard et al. 2017 (569 M mult-adds); Keras MobileNet trainable params 4,231,976",
    ),
    "mobilenet_v2": _torchvision("MobileNet_V2_Weights", 3_504_872, 0.301),
    "squeezenet1_0": _torchvision("SqueezeNet1_0_Weights", 1_248_424, 0.819),
    "squeezenet1_1": _torchvision("SqueezeNet1_1_Weights", 1_235_496, 0.349),
}

MAC_TOLERANCE = 0.005


def load(name: str) -> dict:
    return json.loads((MODELS / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def archs() -> dict[str, Architecture]:
    return {name: Architecture.from_spec(load(name)) for name in PUBLISHED}


def test_every_zoo_model_has_a_published_figure():
    assert set(PUBLISHED) == set(make_zoo.BUILDERS)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_params_match_the_published_count_exactly(archs, name):
    assert archs[name].totals()["params"] == PUBLISHED[name].params, PUBLISHED[name].source


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_macs_match_the_published_figure(archs, name):
    macs = archs[name].totals()["macs"]
    published = PUBLISHED[name].macs
    assert abs(macs - published) / published < MAC_TOLERANCE, (
        f"{name}: {macs:,} multiply-adds vs {published:,.0f} published ({PUBLISHED[name].source})"
    )


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_spec_is_a_1000_class_imagenet_classifier(archs, name):
    arch = archs[name]
    spec = arch.spec
    assert spec["input"]["name"] == "image"
    assert "labels" not in spec
    assert spec["description"] and spec["metadata"]
    pre = arch.image_preprocess
    assert pre is not None and pre["color"] == "RGB" and pre["resize_shorter"] == 256
    assert pre["center_crop"] == list(arch.input_shape[1:])
    assert arch.num_classes == 1000 and arch.output_shape == (1000,)


def test_the_committed_specs_are_what_the_generator_builds():
    built = make_zoo.build()
    for filename, text in make_zoo.rendered().items():
        path = MODELS / filename
        assert path.exists(), f"{filename} is missing: run python models/make_zoo.py"
        assert path.read_text(encoding="utf-8") == text, (
            f"{filename} is out of date: run python models/make_zoo.py"
        )
        assert json.loads(text) == built[filename.removesuffix(".json")]


def test_input_sizes():
    assert load("alexnet-grouped")["input"]["shape"] == [3, 227, 227]
    for name in set(PUBLISHED) - {"alexnet-grouped"}:
        assert load(name)["input"]["shape"] == [3, 224, 224], name


@pytest.mark.parametrize(
    "name, keys",
    [
        ("alexnet", ["features.0.weight", "features.10.bias", "classifier.6.weight"]),
        ("alexnet-grouped", ["conv2.weight", "fc8.bias"]),
        ("vgg16", ["features.28.weight", "classifier.6.bias"]),
        (
            "googlenet",
            [
                "conv1.conv.weight",
                "inception3a.branch1.conv.weight",
                "inception3a.branch1.bn.running_var",
                "inception5b.branch3.1.conv.weight",
                "inception4e.branch4.1.bn.bias",
                "fc.weight",
            ],
        ),
        (
            "resnet18",
            ["conv1.weight", "bn1.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.bias"],
        ),
        (
            "resnet50",
            ["layer1.0.downsample.1.running_mean", "layer4.2.conv3.weight", "fc.bias"],
        ),
        ("mobilenet_v1", ["conv_dw_13.weight", "conv_pw_13_bn.weight", "fc.weight"]),
        (
            "mobilenet_v2",
            ["features.0.0.weight", "features.1.conv.2.bias", "features.18.1.weight"],
        ),
        ("squeezenet1_0", ["features.12.expand3x3.weight", "classifier.1.weight"]),
        ("squeezenet1_1", ["features.3.squeeze.weight", "classifier.1.bias"]),
    ],
)
def test_weight_names_follow_the_reference_implementation(archs, name, keys):
    expected = set(archs[name].weight_specs())
    missing = [k for k in keys if k not in expected]
    assert not missing, missing


def test_weight_shapes_of_the_grouped_and_depthwise_convs(archs):
    specs = archs["alexnet-grouped"].weight_specs()
    assert specs["conv2.weight"].shape == (256, 48, 5, 5)
    assert specs["conv4.weight"].shape == (384, 192, 3, 3)
    dw = archs["mobilenet_v1"].weight_specs()["conv_dw_2.weight"]
    assert dw.shape == (64, 1, 3, 3)


def test_googlenet_keeps_torchvisions_3x3_in_the_5x5_branch(archs):
    specs = archs["googlenet"].weight_specs()
    assert specs["inception3a.branch3.1.conv.weight"].shape == (32, 16, 3, 3)


def test_resnet50_is_v1_5(archs):
    by_name = archs["resnet50"].by_name
    assert by_name["layer2.0.conv1"].layer["stride"] == (1, 1)
    assert by_name["layer2.0.conv2"].layer["stride"] == (2, 2)
    assert by_name["layer2.0.conv2"].out_shape == (128, 28, 28)


def test_squeezenet1_1_runs_on_random_weights(archs):
    plan = compile_plan(archs["squeezenet1_1"], seed=0)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    y = plan.run(x)
    assert y.shape == (1, 1000)
    assert np.isfinite(y).all()
