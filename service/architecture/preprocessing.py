"""A spec's `input.preprocess`: its vocabulary, its defaults, its check against the input shape,
and the full pipeline with every default filled in (`image_preprocess`).

This is the one home of these values: the spec schema validates against them and
`service.imaging` runs the pipeline `image_preprocess` describes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..catalogue.base import fmt_shape
from ..errors import Problem

#: Resampling filters a spec may name for its resize (Pillow's; torchvision's default first).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")
#: The filter of a resize that names none.
DEFAULT_INTERPOLATION = INTERPOLATIONS[0]
#: The modes images decode to, and how many channels each gives.
COLORS = {"L": 1, "RGB": 3}
#: Without `preprocess`, images are scaled to [0, 1] as torchvision's ToTensor does, and neither
#: shifted nor divided.
DEFAULT_SCALE = 1 / 255
DEFAULT_MEAN = 0.0
DEFAULT_STD = 1.0


def default_color(channels: int) -> str | None:
    """The mode that decodes to `channels` channels; None when no image has that many."""
    return next((mode for mode, n in COLORS.items() if n == channels), None)


def image_preprocess(input_: Mapping[str, Any]) -> dict[str, Any] | None:
    """The full image pipeline of a validated `input`, every default filled in; None when the
    input is not an image ([1 or 3, H, W]).

    Steps, in order: decode, apply EXIF orientation, convert to `color`, `resize` to [H, W] (or
    `resize_shorter` keeping the aspect ratio), `center_crop`, multiply by `scale`, subtract
    `mean` and divide by `std` per channel, channels first. Without `preprocess`, images must
    already have the input's size and are scaled to [0, 1], as torchvision's ToTensor does.
    """
    shape = list(input_["shape"])
    if len(shape) != 3 or shape[0] not in COLORS.values():
        return None
    pre = dict(input_.get("preprocess") or {})
    c = shape[0]
    out: dict[str, Any] = {"color": pre.get("color") or default_color(c)}
    for key in ("resize", "resize_shorter", "center_crop"):
        if key in pre:
            out[key] = pre[key]
    if "resize" in out or "resize_shorter" in out:
        out["interpolation"] = pre.get("interpolation", DEFAULT_INTERPOLATION)
    out["scale"] = pre.get("scale", DEFAULT_SCALE)
    out["mean"] = _per_channel(pre.get("mean"), DEFAULT_MEAN, c)
    out["std"] = _per_channel(pre.get("std"), DEFAULT_STD, c)
    out["size"] = shape[1:]
    out["layout"] = "CHW"
    return out


def _per_channel(values: list[float] | None, default: float, channels: int) -> list[float]:
    vals = [float(v) for v in values or [default]]
    return vals * channels if len(vals) == 1 else vals


def preprocess_problems(input_: Mapping[str, Any]) -> list[Problem]:
    """What keeps a schema-valid `input.preprocess` from fitting `input.shape` ([] if none)."""
    pre = input_.get("preprocess")
    if pre is None:
        return []
    problems: list[Problem] = []

    def fail(field: str, message: str) -> None:
        problems.append(Problem(None, field, message))

    shape = tuple(input_["shape"])
    if len(shape) != 3:
        fail(
            "input.preprocess",
            f"preprocess describes images, so input.shape must be [C, H, W], not {list(shape)}",
        )
        return problems
    c, h, w = shape
    color = pre.get("color") or default_color(c)
    if color is None or COLORS[color] != c:
        fail(
            "input.preprocess.color",
            f"images decode to 1 channel (L) or 3 (RGB), but input.shape has {c} channels"
            + (f" and color is {pre['color']}" if "color" in pre else ""),
        )
    for key in ("mean", "std"):
        if key in pre and len(pre[key]) not in (1, c):
            fail(
                f"input.preprocess.{key}",
                f"{key} has {len(pre[key])} values; give 1 or one per channel ({c})",
            )
    final = pre.get("center_crop") or pre.get("resize")
    if "resize_shorter" in pre and "center_crop" not in pre:
        fail(
            "input.preprocess.center_crop",
            "resize_shorter keeps the aspect ratio, so the size is only fixed by a "
            f"center_crop: add center_crop [{h}, {w}]",
        )
    elif final is not None and tuple(final) != (h, w):
        fail(
            "input.preprocess",
            f"preprocessing yields {final[0]}×{final[1]} images but input.shape is "
            f"{fmt_shape(shape)}",
        )
    return problems
