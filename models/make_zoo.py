"""Generate the model zoo's JSON specs in models/ (pure Python, no PyTorch needed).

    python models/make_zoo.py           # (re)write every spec
    python models/make_zoo.py --check   # exit 1 if a committed spec differs from what is built

Each builder mirrors a published architecture layer for layer. Layers that hold weights are
named after the module paths of the reference implementation (torchvision's state_dict keys,
Keras' layer names for MobileNet v1, Caffe's layer names for the grouped AlexNet), so that the
reference weights load under their own names. tests/catalogue/test_zoo.py checks every spec's
parameter and multiply-add totals against the published figures.

The output is deterministic: top-level keys in a fixed order, one layer per line, each layer's
fields in the order the builder gives them (name, type, inputs, then the layer's own fields).
Fields at their default value are left out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

Spec = dict[str, Any]
Layers = list[dict[str, Any]]

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

TORCHVISION = "https://github.com/pytorch/vision/blob/main/torchvision/models"


def imagenet_input(
    crop: int = 224, mean: list[float] | None = None, std: list[float] | None = None
):
    return {
        "name": "image",
        "shape": [3, crop, crop],
        "preprocess": {
            "color": "RGB",
            "resize_shorter": 256,
            "center_crop": [crop, crop],
            "scale": 1 / 255,
            "mean": mean or IMAGENET_MEAN,
            "std": std or IMAGENET_STD,
        },
    }


# ------------------------------------------------------------------------------- layer helpers


def layer(name: str, type_: str, inputs: list[str] | None = None, **fields: Any) -> dict:
    out: dict[str, Any] = {"name": name, "type": type_}
    if inputs is not None:
        out["inputs"] = inputs
    out.update(fields)
    return out


def conv(
    name: str,
    cin: int,
    cout: int,
    k: int,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    bias: bool = True,
    inputs: list[str] | None = None,
) -> dict:
    fields: dict[str, Any] = {"in_channels": cin, "out_channels": cout, "kernel_size": k}
    if stride != 1:
        fields["stride"] = stride
    if padding:
        fields["padding"] = padding
    if groups != 1:
        fields["groups"] = groups
    if not bias:
        fields["bias"] = False
    return layer(name, "conv2d", inputs, **fields)


def bn(name: str, c: int, eps: float = 1e-5) -> dict:
    return layer(name, "batchnorm2d", num_features=c, **({"eps": eps} if eps != 1e-5 else {}))


def maxpool(
    name: str,
    k: int,
    stride: int,
    padding: int = 0,
    ceil_mode: bool = False,
    inputs: list[str] | None = None,
) -> dict:
    fields: dict[str, Any] = {"kernel_size": k, "stride": stride}
    if padding:
        fields["padding"] = padding
    if ceil_mode:
        fields["ceil_mode"] = True
    return layer(name, "maxpool2d", inputs, **fields)


def linear(name: str, i: int, o: int) -> dict:
    return layer(name, "linear", in_features=i, out_features=o)


def dropout(name: str, p: float = 0.5) -> dict:
    return layer(name, "dropout", p=p)


def relu(name: str) -> dict:
    return layer(name, "relu")


# ------------------------------------------------------------------------------------- AlexNet


def alexnet() -> Spec:
    """torchvision.models.alexnet (the 'one weird trick' single-tower variant)."""
    layers = [
        conv("features.0", 3, 64, 11, stride=4, padding=2),
        relu("features.1"),
        maxpool("features.2", 3, 2),
        conv("features.3", 64, 192, 5, padding=2),
        relu("features.4"),
        maxpool("features.5", 3, 2),
        conv("features.6", 192, 384, 3, padding=1),
        relu("features.7"),
        conv("features.8", 384, 256, 3, padding=1),
        relu("features.9"),
        conv("features.10", 256, 256, 3, padding=1),
        relu("features.11"),
        maxpool("features.12", 3, 2),
        # torchvision's AdaptiveAvgPool2d((6, 6)) is the identity on the 6×6 maps of a 224 input.
        layer("flatten", "flatten"),
        dropout("classifier.0"),
        linear("classifier.1", 256 * 6 * 6, 4096),
        relu("classifier.2"),
        dropout("classifier.3"),
        linear("classifier.4", 4096, 4096),
        relu("classifier.5"),
        linear("classifier.6", 4096, 1000),
    ]
    return {
        "description": (
            "AlexNet as in torchvision: the single-tower variant of 'One weird trick for "
            "parallelizing convolutional neural networks' (64-192-384-256-256 filters, no LRN), "
            "224×224 RGB in, 1000 ImageNet class scores out."
        ),
        "metadata": {
            "architecture": "torchvision.models.alexnet",
            "source": f"{TORCHVISION}/alexnet.py",
            "paper": "Krizhevsky, 'One weird trick for parallelizing convolutional neural "
            "networks', arXiv:1404.5997 (2014)",
            "weights": "torchvision AlexNet_Weights.IMAGENET1K_V1 (state_dict keys = layer names)",
        },
        "input": imagenet_input(),
        "layers": layers,
    }


def alexnet_grouped() -> Spec:
    """The 2012 two-GPU AlexNet as Caffe's bvlc_alexnet deploy.prototxt has it."""

    def lrn(name: str) -> dict:
        return layer(name, "lrn", size=5, alpha=1e-4, beta=0.75, k=1.0)

    layers = [
        conv("conv1", 3, 96, 11, stride=4),
        relu("relu1"),
        lrn("norm1"),
        maxpool("pool1", 3, 2, ceil_mode=True),  # Caffe pools round up; exact here either way
        conv("conv2", 96, 256, 5, padding=2, groups=2),
        relu("relu2"),
        lrn("norm2"),
        maxpool("pool2", 3, 2, ceil_mode=True),
        conv("conv3", 256, 384, 3, padding=1),
        relu("relu3"),
        conv("conv4", 384, 384, 3, padding=1, groups=2),
        relu("relu4"),
        conv("conv5", 384, 256, 3, padding=1, groups=2),
        relu("relu5"),
        maxpool("pool5", 3, 2, ceil_mode=True),
        layer("flatten", "flatten"),
        linear("fc6", 256 * 6 * 6, 4096),
        relu("relu6"),
        dropout("drop6"),
        linear("fc7", 4096, 4096),
        relu("relu7"),
        dropout("drop7"),
        linear("fc8", 4096, 1000),
    ]
    return {
        "description": (
            "The original AlexNet of Krizhevsky, Sutskever and Hinton (2012) in Caffe's "
            "bvlc_alexnet form: 227×227 input, local response normalisation, and conv2/4/5 "
            "split into two groups as the two GPUs of the paper."
        ),
        "metadata": {
            "architecture": "Caffe bvlc_alexnet (models/bvlc_alexnet/deploy.prototxt)",
            "source": "https://github.com/BVLC/caffe/blob/master/models/bvlc_alexnet/"
            "deploy.prototxt",
            "paper": "Krizhevsky, Sutskever, Hinton, 'ImageNet Classification with Deep "
            "Convolutional Neural Networks', NIPS 2012",
            "weights": "Caffe's bvlc_alexnet.caffemodel expects BGR pixels in 0-255 minus the "
            "ImageNet mean image; to serve it with this spec's RGB, ImageNet-normalised input, "
            "convert its conv1 (flip the input channels, fold the normalisation into the weights "
            "and bias: conv1 has no padding, so the fold is exact)",
        },
        "input": imagenet_input(227),
        "layers": layers,
    }


# ----------------------------------------------------------------------------------------- VGG


def vgg16() -> Spec:
    cfg: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"]
    cfg += [512, 512, 512, "M", 512, 512, 512, "M"]
    layers: Layers = []
    i, cin = 0, 3
    for v in cfg:
        if v == "M":
            layers.append(maxpool(f"features.{i}", 2, 2))
            i += 1
        else:
            assert isinstance(v, int)
            layers += [conv(f"features.{i}", cin, v, 3, padding=1), relu(f"features.{i + 1}")]
            i, cin = i + 2, v
    layers += [
        # AdaptiveAvgPool2d((7, 7)) is the identity on the 7×7 maps of a 224 input.
        layer("flatten", "flatten"),
        linear("classifier.0", 512 * 7 * 7, 4096),
        relu("classifier.1"),
        dropout("classifier.2"),
        linear("classifier.3", 4096, 4096),
        relu("classifier.4"),
        dropout("classifier.5"),
        linear("classifier.6", 4096, 1000),
    ]
    return {
        "description": (
            "VGG-16 (configuration D, no batch norm) as in torchvision: thirteen 3×3 "
            "convolutions in five stages, then three dense layers."
        ),
        "metadata": {
            "architecture": "torchvision.models.vgg16",
            "source": f"{TORCHVISION}/vgg.py",
            "paper": "Simonyan, Zisserman, 'Very Deep Convolutional Networks for Large-Scale "
            "Image Recognition', ICLR 2015",
            "weights": "torchvision VGG16_Weights.IMAGENET1K_V1 (state_dict keys = layer names)",
        },
        "input": imagenet_input(),
        "layers": layers,
    }


# ----------------------------------------------------------------------------------- GoogLeNet


def basic_conv(p: str, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, inputs=None):
    """torchvision's BasicConv2d: conv (no bias), batch norm (eps 0.001), ReLU."""
    return [
        conv(f"{p}.conv", cin, cout, k, stride=stride, padding=padding, bias=False, inputs=inputs),
        bn(f"{p}.bn", cout, eps=0.001),
        relu(f"{p}.relu"),
    ]


def inception(
    p: str, src: str, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int
) -> Layers:
    return [
        *basic_conv(f"{p}.branch1", cin, c1, 1, inputs=[src]),
        *basic_conv(f"{p}.branch2.0", cin, c3r, 1, inputs=[src]),
        *basic_conv(f"{p}.branch2.1", c3r, c3, 3, padding=1),
        *basic_conv(f"{p}.branch3.0", cin, c5r, 1, inputs=[src]),
        # torchvision's "5×5" branch uses a 3×3 kernel (pytorch/vision#906), kept for its weights.
        *basic_conv(f"{p}.branch3.1", c5r, c5, 3, padding=1),
        maxpool(f"{p}.branch4.0", 3, 1, padding=1, ceil_mode=True, inputs=[src]),
        *basic_conv(f"{p}.branch4.1", cin, pool, 1),
        layer(
            f"{p}.concat",
            "concat",
            [
                f"{p}.branch1.relu",
                f"{p}.branch2.1.relu",
                f"{p}.branch3.1.relu",
                f"{p}.branch4.1.relu",
            ],
        ),
    ]


def googlenet() -> Spec:
    layers: Layers = [
        *basic_conv("conv1", 3, 64, 7, stride=2, padding=3),
        maxpool("maxpool1", 3, 2, ceil_mode=True),
        *basic_conv("conv2", 64, 64, 1),
        *basic_conv("conv3", 64, 192, 3, padding=1),
        maxpool("maxpool2", 3, 2, ceil_mode=True),
    ]
    blocks: list[tuple[str, tuple[int, ...]] | tuple[str, int]] = [
        ("inception3a", (192, 64, 96, 128, 16, 32, 32)),
        ("inception3b", (256, 128, 128, 192, 32, 96, 64)),
        ("maxpool3", 3),
        ("inception4a", (480, 192, 96, 208, 16, 48, 64)),
        ("inception4b", (512, 160, 112, 224, 24, 64, 64)),
        ("inception4c", (512, 128, 128, 256, 24, 64, 64)),
        ("inception4d", (512, 112, 144, 288, 32, 64, 64)),
        ("inception4e", (528, 256, 160, 320, 32, 128, 128)),
        ("maxpool4", 2),
        ("inception5a", (832, 256, 160, 320, 32, 128, 128)),
        ("inception5b", (832, 384, 192, 384, 48, 128, 128)),
    ]
    src = "maxpool2"
    for name, arg in blocks:
        if isinstance(arg, int):
            layers.append(maxpool(name, arg, 2, ceil_mode=True))
            src = name
        else:
            layers += inception(name, src, *arg)
            src = f"{name}.concat"
    layers += [
        layer("avgpool", "global_avgpool"),
        layer("flatten", "flatten"),
        dropout("dropout", 0.2),
        linear("fc", 1024, 1000),
    ]
    return {
        "description": (
            "GoogLeNet (Inception v1) as in torchvision, without the auxiliary heads: "
            "BasicConv2d blocks (conv + batch norm + ReLU) and nine inception modules."
        ),
        "metadata": {
            "architecture": "torchvision.models.googlenet (aux_logits=False)",
            "source": f"{TORCHVISION}/googlenet.py",
            "paper": "Szegedy et al., 'Going Deeper with Convolutions', CVPR 2015",
            "weights": "torchvision GoogLeNet_Weights.IMAGENET1K_V1 (state_dict keys = layer "
            "names; drop the aux1/aux2 keys)",
            "preprocess": "torchvision loads these weights with transform_input=True, which maps "
            "ImageNet-normalised input to (x - 0.5) / 0.5; this spec normalises that way directly",
        },
        # transform_input=True turns (x - mean) / std into (x - 0.5) / 0.5 before conv1 (whose
        # zero padding keeps this from being folded into its weights), so the pretrained weights
        # see pixels normalised with mean 0.5 and std 0.5.
        "input": imagenet_input(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
        "layers": layers,
    }


# -------------------------------------------------------------------------------------- ResNet


def basic_block(p: str, src: str, cin: int, planes: int, stride: int) -> tuple[Layers, str]:
    layers = [
        conv(f"{p}.conv1", cin, planes, 3, stride=stride, padding=1, bias=False, inputs=[src]),
        bn(f"{p}.bn1", planes),
        relu(f"{p}.relu1"),
        conv(f"{p}.conv2", planes, planes, 3, padding=1, bias=False),
        bn(f"{p}.bn2", planes),
    ]
    identity = src
    if stride != 1 or cin != planes:
        layers += downsample(p, src, cin, planes, stride)
        identity = f"{p}.downsample.1"
    layers += [layer(f"{p}.add", "add", [f"{p}.bn2", identity]), relu(f"{p}.relu2")]
    return layers, f"{p}.relu2"


def bottleneck(p: str, src: str, cin: int, planes: int, stride: int) -> tuple[Layers, str]:
    """torchvision's Bottleneck (ResNet v1.5: the stride sits on the 3×3 conv)."""
    out = planes * 4
    layers = [
        conv(f"{p}.conv1", cin, planes, 1, bias=False, inputs=[src]),
        bn(f"{p}.bn1", planes),
        relu(f"{p}.relu1"),
        conv(f"{p}.conv2", planes, planes, 3, stride=stride, padding=1, bias=False),
        bn(f"{p}.bn2", planes),
        relu(f"{p}.relu2"),
        conv(f"{p}.conv3", planes, out, 1, bias=False),
        bn(f"{p}.bn3", out),
    ]
    identity = src
    if stride != 1 or cin != out:
        layers += downsample(p, src, cin, out, stride)
        identity = f"{p}.downsample.1"
    layers += [layer(f"{p}.add", "add", [f"{p}.bn3", identity]), relu(f"{p}.relu3")]
    return layers, f"{p}.relu3"


def downsample(p: str, src: str, cin: int, cout: int, stride: int) -> Layers:
    return [
        conv(f"{p}.downsample.0", cin, cout, 1, stride=stride, bias=False, inputs=[src]),
        bn(f"{p}.downsample.1", cout),
    ]


def resnet(depth: int) -> Spec:
    block, counts, expansion = {
        18: (basic_block, (2, 2, 2, 2), 1),
        50: (bottleneck, (3, 4, 6, 3), 4),
    }[depth]
    layers: Layers = [
        conv("conv1", 3, 64, 7, stride=2, padding=3, bias=False),
        bn("bn1", 64),
        relu("relu"),
        maxpool("maxpool", 3, 2, padding=1),
    ]
    src, cin = "maxpool", 64
    for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), counts, strict=True), start=1):
        for i in range(n):
            stride = 2 if stage > 1 and i == 0 else 1
            more, src = block(f"layer{stage}.{i}", src, cin, planes, stride)
            layers += more
            cin = planes * expansion
    layers += [
        layer("avgpool", "global_avgpool"),
        layer("flatten", "flatten"),
        linear("fc", 512 * expansion, 1000),
    ]
    kind = "basic blocks" if depth == 18 else "bottleneck blocks, stride on the 3×3 conv (v1.5)"
    return {
        "description": (
            f"ResNet-{depth} as in torchvision: {kind}, 224×224 RGB in, 1000 class scores out."
        ),
        "metadata": {
            "architecture": f"torchvision.models.resnet{depth}",
            "source": f"{TORCHVISION}/resnet.py",
            "paper": "He, Zhang, Ren, Sun, 'Deep Residual Learning for Image Recognition', "
            "CVPR 2016",
            "weights": f"torchvision ResNet{depth}_Weights.IMAGENET1K_V1 (state_dict keys = "
            "layer names)",
        },
        "input": imagenet_input(),
        "layers": layers,
    }


# ----------------------------------------------------------------------------------- MobileNet


def mobilenet_v1() -> Spec:
    """MobileNet v1 1.0-224 (Howard et al. 2017, Table 1), with Keras' layer names."""
    eps = 1e-3  # Keras' and TF-slim's batch-norm epsilon
    layers: Layers = [
        conv("conv1", 3, 32, 3, stride=2, padding=1, bias=False),
        bn("conv1_bn", 32, eps),
        relu("conv1_relu"),
    ]
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    plan += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    cin = 32
    for i, (cout, stride) in enumerate(plan, start=1):
        layers += [
            conv(f"conv_dw_{i}", cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
            bn(f"conv_dw_{i}_bn", cin, eps),
            relu(f"conv_dw_{i}_relu"),
            conv(f"conv_pw_{i}", cin, cout, 1, bias=False),
            bn(f"conv_pw_{i}_bn", cout, eps),
            relu(f"conv_pw_{i}_relu"),
        ]
        cin = cout
    layers += [
        layer("avgpool", "global_avgpool"),
        layer("flatten", "flatten"),
        linear("fc", 1024, 1000),
    ]
    return {
        "description": (
            "MobileNet v1 (width 1.0, 224×224): a strided 3×3 conv, then 13 depthwise-separable "
            "blocks (3×3 depthwise + 1×1 pointwise, each with batch norm and ReLU), global "
            "average pool and a dense classifier."
        ),
        "metadata": {
            "architecture": "MobileNet v1 1.0-224 (the paper's Table 1)",
            "paper": "Howard et al., 'MobileNets: Efficient Convolutional Neural Networks for "
            "Mobile Vision Applications', arXiv:1704.04861 (2017)",
            "names": "Keras applications.MobileNet layer names (its 1×1 conv_preds is 'fc' here)",
            "note": "ReLU as in the paper; Keras and TF-slim checkpoints were trained with ReLU6",
        },
        "input": imagenet_input(),
        "layers": layers,
    }


def mobilenet_v2() -> Spec:
    """torchvision.models.mobilenet_v2 (width 1.0)."""

    def cbr(p: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, inputs=None):
        """torchvision's Conv2dNormActivation with ReLU6: p.0 conv, p.1 bn, p.2 relu6."""
        pad = (k - 1) // 2
        return [
            conv(f"{p}.0", cin, cout, k, stride, pad, groups, bias=False, inputs=inputs),
            bn(f"{p}.1", cout),
            layer(f"{p}.2", "relu6"),
        ]

    layers: Layers = cbr("features.0", 3, 32, 3, stride=2)
    src, cin, idx = "features.0.2", 32, 1
    setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2)]
    setting += [(6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    for t, c, n, s in setting:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{idx}.conv"
            hidden = cin * t
            block: Layers = []
            j = 0
            if t != 1:
                block += cbr(f"{p}.0", cin, hidden, 1, inputs=[src])
                j = 1
            first = [src] if t == 1 else None
            block += cbr(f"{p}.{j}", hidden, hidden, 3, stride, groups=hidden, inputs=first)
            block += [
                conv(f"{p}.{j + 1}", hidden, c, 1, bias=False),
                bn(f"{p}.{j + 2}", c),
            ]
            out = f"{p}.{j + 2}"
            if stride == 1 and cin == c:
                block.append(layer(f"features.{idx}.add", "add", [out, src]))
                out = f"features.{idx}.add"
            layers += block
            src, cin, idx = out, c, idx + 1
    layers += cbr(f"features.{idx}", cin, 1280, 1, inputs=[src])
    layers += [
        layer("avgpool", "global_avgpool"),
        layer("flatten", "flatten"),
        dropout("classifier.0", 0.2),
        linear("classifier.1", 1280, 1000),
    ]
    return {
        "description": (
            "MobileNet v2 (width 1.0) as in torchvision: inverted residual blocks (1×1 expand, "
            "3×3 depthwise, linear 1×1 project) with ReLU6, residual sums where the shape allows."
        ),
        "metadata": {
            "architecture": "torchvision.models.mobilenet_v2",
            "source": f"{TORCHVISION}/mobilenetv2.py",
            "paper": "Sandler et al., 'MobileNetV2: Inverted Residuals and Linear Bottlenecks', "
            "CVPR 2018",
            "weights": "torchvision MobileNet_V2_Weights.IMAGENET1K_V1 (state_dict keys = layer "
            "names)",
        },
        "input": imagenet_input(),
        "layers": layers,
    }


# ---------------------------------------------------------------------------------- SqueezeNet


def fire(p: str, cin: int, squeeze: int, e1: int, e3: int) -> Layers:
    return [
        conv(f"{p}.squeeze", cin, squeeze, 1),
        relu(f"{p}.squeeze_activation"),
        conv(f"{p}.expand1x1", squeeze, e1, 1),
        relu(f"{p}.expand1x1_activation"),
        conv(f"{p}.expand3x3", squeeze, e3, 3, padding=1, inputs=[f"{p}.squeeze_activation"]),
        relu(f"{p}.expand3x3_activation"),
        layer(f"{p}.concat", "concat", [f"{p}.expand1x1_activation", f"{p}.expand3x3_activation"]),
    ]


def squeezenet(version: str) -> Spec:
    if version == "1_0":
        stem = [conv("features.0", 3, 96, 7, stride=2)]
        body: list[tuple[int, int, int, int] | None] = [
            (96, 16, 64, 64),
            (128, 16, 64, 64),
            (128, 32, 128, 128),
            None,
            (256, 32, 128, 128),
            (256, 48, 192, 192),
            (384, 48, 192, 192),
            (384, 64, 256, 256),
            None,
            (512, 64, 256, 256),
        ]
    else:
        stem = [conv("features.0", 3, 64, 3, stride=2)]
        body = [
            (64, 16, 64, 64),
            (128, 16, 64, 64),
            None,
            (128, 32, 128, 128),
            (256, 32, 128, 128),
            None,
            (256, 48, 192, 192),
            (384, 48, 192, 192),
            (384, 64, 256, 256),
            (512, 64, 256, 256),
        ]
    layers: Layers = [*stem, relu("features.1"), maxpool("features.2", 3, 2, ceil_mode=True)]
    for i, args in enumerate(body, start=3):
        if args is None:
            layers.append(maxpool(f"features.{i}", 3, 2, ceil_mode=True))
        else:
            layers += fire(f"features.{i}", *args)
    layers += [
        dropout("classifier.0"),
        conv("classifier.1", 512, 1000, 1),
        relu("classifier.2"),
        layer("classifier.3", "global_avgpool"),
        layer("flatten", "flatten"),
    ]
    dotted = version.replace("_", ".")
    what = (
        "the paper's network (96-filter 7×7 stem)"
        if version == "1_0"
        else "the revised network (64-filter 3×3 stem, earlier pooling, ~2.4× fewer multiply-adds)"
    )
    return {
        "description": (
            f"SqueezeNet {dotted} as in torchvision, {what}: fire modules (1×1 squeeze, then "
            "1×1 and 3×3 expand, concatenated) and a 1×1 conv classifier with global average pool."
        ),
        "metadata": {
            "architecture": f"torchvision.models.squeezenet{version}",
            "source": f"{TORCHVISION}/squeezenet.py",
            "paper": "Iandola et al., 'SqueezeNet: AlexNet-level accuracy with 50x fewer "
            "parameters and <0.5MB model size', arXiv:1602.07360 (2016)",
            "weights": f"torchvision SqueezeNet{version}_Weights.IMAGENET1K_V1 (state_dict keys = "
            "layer names)",
        },
        "input": imagenet_input(),
        "layers": layers,
    }


# ----------------------------------------------------------------------------------- the zoo

BUILDERS: dict[str, Callable[[], Spec]] = {
    "alexnet": alexnet,
    "alexnet-grouped": alexnet_grouped,
    "vgg16": vgg16,
    "googlenet": googlenet,
    "resnet18": lambda: resnet(18),
    "resnet50": lambda: resnet(50),
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "squeezenet1_0": lambda: squeezenet("1_0"),
    "squeezenet1_1": lambda: squeezenet("1_1"),
}

TOP_ORDER = ("description", "metadata", "input", "labels", "output", "layers")


def build() -> dict[str, Spec]:
    """Every zoo spec, by model name (the file is models/<name>.json)."""
    return {name: make() for name, make in BUILDERS.items()}


def render(spec: Spec) -> str:
    """A spec as the text of its file: readable, one layer per line, deterministic."""
    assert set(spec) <= set(TOP_ORDER), set(spec) - set(TOP_ORDER)
    parts = []
    for key in TOP_ORDER:
        if key not in spec:
            continue
        if key == "layers":
            rows = ",\n".join("  " + json.dumps(row, ensure_ascii=False) for row in spec[key])
            parts.append(f'"layers": [\n{rows}\n ]')
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(spec[key], ensure_ascii=False)}")
    return "{\n " + ",\n ".join(parts) + "\n}\n"


def rendered() -> dict[str, str]:
    """File name → file text for every zoo spec."""
    return {f"{name}.json": render(spec) for name, spec in build().items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for filename, text in rendered().items():
        path = HERE / filename
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(filename)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python models/make_zoo.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
