"""Image bytes → preprocessed float32 arrays, as a spec's `input.preprocess` says (Pillow).

The pipeline is torchvision's classic one, so a model trained with
`Resize → CenterCrop → ToTensor → Normalize` sees the same numbers here: decode, apply the EXIF
orientation, convert to `L` or `RGB`, resize (antialiased, as PIL does), center-crop (padding with
zeros when the image is smaller), multiply by `scale`, subtract `mean` and divide by `std` per
channel, channels first. The vocabulary and its defaults live in
`service.architecture.preprocessing`, whose `image_preprocess` gives the pipeline with every
default filled in.
"""

from __future__ import annotations

import functools
import io
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .architecture.preprocessing import COLORS, DEFAULT_INTERPOLATION, INTERPOLATIONS
from .errors import InvalidInput, TooLarge

#: What Pillow may decode here; its other formats (EPS, PSD, …) are not offered to untrusted input.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
#: Pillow's own decompression-bomb threshold (about 0.25 GiB as 24-bit RGB).
DEFAULT_MAX_PIXELS = 89_478_485
#: Pixels all the images of one request may hold together: about two images at the per-image
#: limit, or sixteen 12-megapixel photos; decoding that many takes ~2 s of one core.
DEFAULT_MAX_REQUEST_PIXELS = 200_000_000

#: Pillow's filter for each interpolation a spec may name (Pillow spells them in capitals).
_RESAMPLE = {name: Image.Resampling[name.upper()] for name in INTERPOLATIONS}


def set_pillow_pixel_limit(max_pixels: int) -> None:
    """Make Pillow's own decompression-bomb guard agree with the configured limit (process-wide).

    Its warning for images just over the limit is silenced: the pipeline refuses them itself,
    with a 413 naming the file.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class UndecodableImage(InvalidInput):
    """The bytes are not an image of a format offered here, or its data is damaged."""


@dataclass(frozen=True)
class ImagePipeline:
    color: str  # a key of COLORS
    size: tuple[int, int]  # (H, W) the model takes
    resize: tuple[int, int] | None
    resize_shorter: int | None
    center_crop: tuple[int, int] | None
    interpolation: str
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS

    @classmethod
    def from_description(
        cls,
        pre: Mapping[str, Any],
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS,
    ) -> ImagePipeline:
        """From `image_preprocess` (every default already filled in)."""

        def pair(key: str) -> tuple[int, int] | None:
            return tuple(pre[key]) if key in pre else None  # type: ignore[return-value]

        return cls(
            color=pre["color"],
            size=tuple(pre["size"]),  # type: ignore[arg-type]
            resize=pair("resize"),
            resize_shorter=pre.get("resize_shorter"),
            center_crop=pair("center_crop"),
            interpolation=pre.get("interpolation", DEFAULT_INTERPOLATION),
            scale=float(pre["scale"]),
            mean=tuple(pre["mean"]),
            std=tuple(pre["std"]),
            max_pixels=max_pixels,
            max_request_pixels=max_request_pixels,
        )

    @property
    def channels(self) -> int:
        return COLORS[self.color]

    def batch(self, images: Sequence[tuple[str, bytes]]) -> np.ndarray:
        """(N, C, H, W) float32 for N named images, in order; errors name the image.

        Every header is read first: images that together hold more than `max_request_pixels`
        are refused (413) before any is decoded, so a request's decoding time and memory are
        bounded whatever the number of images.
        """
        opened = [self._open(data, name) for name, data in images]
        self._check_request_pixels(opened)
        h, w = self.size
        out = np.empty((len(images), self.channels, h, w), np.float32)
        for i, ((name, _), img) in enumerate(zip(images, opened, strict=True)):
            out[i] = self._array(self._load(img, name), name)
        return out

    def __call__(self, data: bytes, name: str = "the image") -> np.ndarray:
        """One image as (C, H, W) float32."""
        img = self._open(data, name)
        self._check_request_pixels([img])
        return self._array(self._load(img, name), name)

    def _check_request_pixels(self, opened: Sequence[Image.Image]) -> None:
        total = sum(img.size[0] * img.size[1] for img in opened)
        if total > self.max_request_pixels:
            what = "the image holds" if len(opened) == 1 else f"the {len(opened)} images hold"
            raise TooLarge(
                f"{what} {total:,} pixels; one request may hold at most "
                f"{self.max_request_pixels:,} (CONVSERVE_MAX_REQUEST_PIXELS): send fewer or "
                f"smaller images per request"
            )

    def _array(self, decoded: Image.Image, name: str) -> np.ndarray:
        img = self._pixels(decoded, name)
        h, w = self.size
        if img.size != (w, h):
            iw, ih = img.size
            hint = (
                f"send {h}×{w} images or add a resize to the spec's input.preprocess"
                if self.resize is None and self.center_crop is None
                else "its preprocessing does not reach the input size"
            )
            raise InvalidInput(
                f"{name} is {ih}×{iw} (height×width) after preprocessing, but the model takes "
                f"{h}×{w} images: {hint}"
            )
        arr = np.asarray(img, dtype=np.float32)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        a, b = self._affine
        return arr * a + b

    @functools.cached_property
    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(x·scale − mean) / std as one multiply-add per value: (a, b) per channel."""
        a = np.asarray([self.scale / s for s in self.std], np.float32)
        b = np.asarray([-m / s for m, s in zip(self.mean, self.std, strict=True)], np.float32)
        return a[:, None, None], b[:, None, None]

    # -- steps -------------------------------------------------------------------------

    def _open(self, data: bytes, name: str) -> Image.Image:
        """The image with only its header read; 413 when it has more pixels than allowed."""
        if not data:
            raise UndecodableImage(f"{name} is empty")
        try:
            img = Image.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError:
            raise UndecodableImage(
                f"{name} is not an image convserve can read (PNG, JPEG, BMP, GIF, TIFF or WebP)"
            ) from None
        except Image.DecompressionBombError as err:
            # Pillow refuses at twice its limit and quotes that doubled number: say ours.
            found = re.search(r"\((\d+) pixels\)", str(err))
            size = f" is {int(found.group(1)):,} pixels;" if found else " has too many pixels;"
            raise TooLarge(
                f"{name}{size} images may have at most {self.max_pixels:,} "
                f"(CONVSERVE_MAX_IMAGE_PIXELS)"
            ) from None
        w, h = img.size
        if w * h > self.max_pixels:
            raise TooLarge(
                f"{name} is {w}×{h} = {w * h:,} pixels; images may have at most "
                f"{self.max_pixels:,} (CONVSERVE_MAX_IMAGE_PIXELS)"
            )
        return img

    def _load(self, img: Image.Image, name: str) -> Image.Image:
        """Decode an opened image (its first frame), turned as its EXIF orientation says."""
        try:
            img.load()  # the first frame of a GIF or multi-page TIFF
            if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:
                img = ImageOps.exif_transpose(img)  # as the camera held it
            return img
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            raise UndecodableImage(
                f"{name}: the {img.format} data cannot be decoded ({err})"
            ) from None

    def _pixels(self, img: Image.Image, name: str) -> Image.Image:
        if img.mode.startswith("I;16"):
            # 16-bit grey: keep the top 8 bits (Pillow's own conversion would clip at 255).
            img = Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8))
        if img.mode != self.color:
            img = img.convert(self.color)
        resample = _RESAMPLE[self.interpolation]
        if self.resize is not None:
            h, w = self.resize
            if img.size != (w, h):
                img = img.resize((w, h), resample)
        elif self.resize_shorter is not None:
            img = _resize_shorter(img, self.resize_shorter, resample)
        if self.center_crop is not None:
            img = _center_crop(img, *self.center_crop)
        return img


def _resize_shorter(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """The shorter side becomes `size`, the longer keeps the aspect ratio (torchvision's rule)."""
    w, h = img.size
    if min(w, h) == size:
        return img
    if w <= h:
        return img.resize((size, int(size * h / w)), resample)
    return img.resize((int(size * w / h), size), resample)


def _center_crop(img: Image.Image, ch: int, cw: int) -> Image.Image:
    """torchvision's center crop: zero padding first where the image is smaller than the crop."""
    w, h = img.size
    top = -((ch - h) // 2) if ch > h else int(round((h - ch) / 2.0))
    left = -((cw - w) // 2) if cw > w else int(round((w - cw) / 2.0))
    return img.crop((left, top, left + cw, top + ch))  # Pillow fills outside pixels with 0
