"""Trains the demo model `digits` and writes models/digits.json, models/digits.npz and the
example images in models/examples/.

The data is scikit-learn's bundled copy of the UCI handwritten digits (1,797 8×8 greyscale
scans, values 0–16; nothing to download), upscaled to 32×32 with Pillow's bilinear filter, the
way the examples are stored. 20 % is held out (stratified, seed 0) and never trained on. Training
inverts half the images at random and shifts them by up to 2 pixels, so dark-on-light drawings
classify as well as the dataset's light-on-dark ones.

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 numpy scikit-learn pillow
    /tmp/torchenv/bin/python models/train_digits.py

PyTorch is needed here only; convserve serves the result with its own NumPy engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
SIZE = 32
MEAN, STD = 0.5, 0.5
SEED = 0


def upscale(img8: np.ndarray) -> np.ndarray:
    """An 8×8 scan (0–16) as the 32×32 uint8 picture the examples are."""
    pixels = Image.fromarray(np.round(img8 * (255 / 16)).astype(np.uint8))
    return np.asarray(pixels.resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def to_input(pictures: np.ndarray) -> torch.Tensor:
    """uint8 pictures → what convserve feeds the model (scale 1/255, mean 0.5, std 0.5)."""
    x = pictures.astype(np.float32) / 255
    return torch.from_numpy((x - MEAN) / STD)[:, None]


def augment(pictures: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = pictures.copy()
    invert = rng.random(len(out)) < 0.5
    out[invert] = 255 - out[invert]
    padded = np.pad(out, ((0, 0), (2, 2), (2, 2)), mode="edge")
    for i, (dy, dx) in enumerate(rng.integers(0, 5, (len(out), 2))):
        out[i] = padded[i, dy : dy + SIZE, dx : dx + SIZE]
    return out


class Digits(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.conv3, self.bn3 = nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.pool(torch.relu(bn(conv(x))))
        return self.fc(self.drop(torch.flatten(x, 1)))


def spec(accuracy: float, inverted: float, n_train: int, n_test: int) -> dict:
    layers: list[dict] = []
    for i, (cin, cout) in enumerate(((1, 16), (16, 32), (32, 32)), start=1):
        layers += [
            {"name": f"conv{i}", "type": "conv2d", "in_channels": cin, "out_channels": cout,
             "kernel_size": 3, "padding": 1, "bias": False},
            {"name": f"bn{i}", "type": "batchnorm2d", "num_features": cout},
            {"name": f"relu{i}", "type": "relu"},
            {"name": f"pool{i}", "type": "maxpool2d", "kernel_size": 2},
        ]  # fmt: skip
    layers += [
        {"name": "flatten", "type": "flatten"},
        {"name": "drop", "type": "dropout", "p": 0.3},
        {"name": "fc", "type": "linear", "in_features": 512, "out_features": 10},
    ]
    return {
        "description": "A small CNN for handwritten digits (0-9), trained on scikit-learn's "
        "bundled UCI digits; light-on-dark or dark-on-light, any size (resized to 32×32).",
        "input": {
            "name": "image",
            "shape": [1, SIZE, SIZE],
            "preprocess": {
                "color": "L",
                "resize": [SIZE, SIZE],
                "scale": 1 / 255,
                "mean": [MEAN],
                "std": [STD],
            },
        },  # fmt: skip
        "labels": [str(d) for d in range(10)],
        "layers": layers,
        "metadata": {
            "trained_by": "models/train_digits.py",
            "dataset": f"scikit-learn load_digits (UCI), {n_train} train / {n_test} held out",
            "heldout_accuracy": round(accuracy, 4),
            "heldout_accuracy_inverted": round(inverted, 4),
        },
    }


def main() -> None:
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    data = load_digits()
    pictures = np.stack([upscale(img) for img in data.images])
    train_x, test_x, train_y, test_y = train_test_split(
        pictures, data.target, test_size=0.2, stratify=data.target, random_state=SEED
    )
    net = Digits()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    epochs = 40
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * 23)
    labels = torch.from_numpy(train_y).long()
    for _ in range(epochs):
        net.train()
        x = to_input(augment(train_x, rng))
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = order[i : i + 64]
            loss = nn.functional.cross_entropy(net(x[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.inference_mode():
        pred = net(to_input(test_x)).argmax(1).numpy()
        pred_inv = net(to_input(255 - test_x)).argmax(1).numpy()
    accuracy, inverted = (pred == test_y).mean(), (pred_inv == test_y).mean()
    print(f"held-out accuracy: {accuracy:.4f} ({len(test_y)} images), inverted: {inverted:.4f}")

    doc = spec(float(accuracy), float(inverted), len(train_y), len(test_y))
    (HERE / "digits.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    arrays = {k: v.numpy() for k, v in net.state_dict().items() if "num_batches" not in k}
    np.savez(HERE / "digits.npz", **arrays)

    examples = HERE / "examples"
    examples.mkdir(exist_ok=True)
    for digit in (0, 3, 7):
        i = next(i for i in range(len(test_y)) if test_y[i] == digit and pred[i] == digit)
        Image.fromarray(test_x[i]).save(examples / f"{digit}.png", optimize=True)
    j = next(i for i in range(len(test_y)) if test_y[i] == 4 and pred_inv[i] == 4)
    Image.fromarray(255 - test_x[j]).save(examples / "4-dark-on-light.png", optimize=True)
    print("wrote digits.json, digits.npz and examples/{0,3,7,4-dark-on-light}.png")


if __name__ == "__main__":
    main()
