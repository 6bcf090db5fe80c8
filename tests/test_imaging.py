"""Image bytes → preprocessed arrays: formats, orientation, colour, resize, crop, normalisation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.architecture import Architecture, image_preprocess
from service.errors import InvalidInput, SpecError, TooLarge
from service.imaging import ImagePipeline
from tests.helpers import spec_of


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def pipeline(shape: list[int], pre: dict | None = None, **kw) -> ImagePipeline:
    input_ = {"shape": shape, **({"preprocess": pre} if pre is not None else {})}
    return ImagePipeline.from_description(image_preprocess(input_), **kw)


def coords(w: int, h: int) -> Image.Image:
    """A grey image whose pixel (x, y) holds 16·y + x, so a crop's origin can be read back."""
    return Image.fromarray((np.arange(h)[:, None] * 16 + np.arange(w)[None, :]).astype(np.uint8))


def test_lenet_pipeline_is_torchvision_to_tensor_then_normalize():
    pre = {"color": "L", "resize": [4, 4], "scale": 1 / 255, "mean": [0.5], "std": [0.5]}
    img = coords(4, 4)
    got = pipeline([1, 4, 4], pre)(encode(img))
    want = (np.asarray(img, np.float32) / 255 - 0.5) / 0.5
    assert got.shape == (1, 4, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], want, rtol=1e-6, atol=1e-6)


def test_per_channel_mean_and_std_in_rgb_order():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 128, 0
    pre = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    got = pipeline([3, 2, 3], pre)(encode(Image.fromarray(rgb)))
    for c, value in enumerate((255, 128, 0)):
        want = (value / 255 - pre["mean"][c]) / pre["std"][c]
        np.testing.assert_allclose(got[c], want, rtol=1e-5)


def test_without_preprocess_images_are_scaled_to_unit_range_and_must_fit():
    p = pipeline([1, 3, 3])
    assert p.scale == pytest.approx(1 / 255) and p.mean == (0.0,) and p.std == (1.0,)
    np.testing.assert_allclose(p(encode(Image.new("L", (3, 3), 255))), 1.0)
    with pytest.raises(InvalidInput, match=r"^a\.png is 4×3 .* model takes 3×3 images: send 3×3"):
        p(encode(Image.new("L", (3, 4))), "a.png")


@pytest.mark.parametrize(
    "fmt, kw",
    [("PNG", {}), ("JPEG", {"quality": 95}), ("BMP", {}), ("GIF", {}), ("TIFF", {}),
     ("WEBP", {"lossless": True})],
)  # fmt: skip
def test_every_supported_format_decodes(fmt, kw):
    img = Image.fromarray(np.full((8, 8, 3), (200, 30, 90), np.uint8))
    got = pipeline([3, 8, 8])(encode(img, fmt, **kw))
    # Lossless formats are exact; JPEG within its quantisation; GIF within its palette.
    np.testing.assert_allclose(got[:, 4, 4], np.array([200, 30, 90]) / 255, atol=0.05)


def test_rgb_converts_to_grey_with_pillows_luma_and_grey_to_rgb():
    rgb = Image.fromarray(np.full((2, 2, 3), (255, 0, 0), np.uint8))
    grey = pipeline([1, 2, 2])(encode(rgb))
    assert grey[0, 0, 0] == pytest.approx(76 / 255)  # L = R·299/1000 + …, rounded
    back = pipeline([3, 2, 2])(encode(Image.new("L", (2, 2), 100)))
    np.testing.assert_allclose(back, 100 / 255, rtol=1e-6)


def test_rgba_and_palette_images_convert():
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    got = pipeline([3, 2, 2])(encode(rgba))[:, 0, 0]
    np.testing.assert_allclose(got, np.array([10, 20, 30]) / 255, rtol=1e-6)
    pal = Image.new("P", (2, 2), 0)
    pal.putpalette([0, 0, 255] + [0] * 765)
    assert pipeline([3, 2, 2])(encode(pal))[2, 0, 0] == pytest.approx(1.0)


def test_sixteen_bit_grey_keeps_its_top_byte():
    img = Image.fromarray(np.full((2, 2), 0x8000, np.uint16))
    assert img.mode.startswith("I;16")
    assert pipeline([1, 2, 2])(encode(img))[0, 0, 0] == pytest.approx(0x80 / 255)


def test_exif_orientation_is_applied():
    img = coords(4, 2)  # 4 wide, 2 tall
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90° clockwise
    data = encode(img, "JPEG", exif=exif, quality=100)
    got = pipeline([1, 4, 2])(data)  # now 2 wide, 4 tall
    assert got.shape == (1, 4, 2)


def test_the_first_frame_of_an_animated_gif():
    frames = [Image.new("L", (2, 2), v) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert pipeline([1, 2, 2])(buf.getvalue())[0, 0, 0] == pytest.approx(10 / 255, abs=2 / 255)


def test_resize_to_fixed_size_with_the_named_filter():
    img = coords(8, 8)
    pre = {"resize": [4, 2], "interpolation": "nearest", "scale": 1}
    got = pipeline([1, 4, 2], pre)(encode(img))
    want = np.asarray(img.resize((2, 4), Image.Resampling.NEAREST), np.float32)
    np.testing.assert_array_equal(got[0], want)


def test_resize_shorter_then_center_crop_follow_torchvision():
    # 12 wide × 6 tall, shorter side 3 → 6×3; crop 2×4 → top round(0.5)=0, left round(1)=1
    img = coords(12, 6)
    pre = {"resize_shorter": 3, "center_crop": [2, 4], "interpolation": "nearest", "scale": 1}
    got = pipeline([1, 2, 4], pre)(encode(img))
    resized = np.asarray(img.resize((6, 3), Image.Resampling.NEAREST), np.float32)
    np.testing.assert_array_equal(got[0], resized[0:2, 1:5])


def test_center_crop_larger_than_the_image_pads_with_zeros_like_torchvision():
    img = Image.new("L", (3, 5), 255)  # 3 wide, 5 tall, cropped to 8×8
    got = pipeline([1, 8, 8], {"center_crop": [8, 8], "scale": 1})(encode(img))[0]
    # torchvision pads left (8-3)//2 = 2, top (8-5)//2 = 1
    assert got[1:6, 2:5].min() == 255 and got.sum() == 255 * 15


def test_errors_name_the_file():
    p = pipeline([1, 4, 4], {"resize": [4, 4]})
    with pytest.raises(InvalidInput, match="^notes.txt is not an image convserve can read"):
        p(b"hello, world", "notes.txt")
    with pytest.raises(InvalidInput, match="^empty.png is empty"):
        p(b"", "empty.png")
    truncated = encode(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    )
    with pytest.raises(InvalidInput, match="^cut.png: the PNG data cannot be decoded"):
        p(truncated[: len(truncated) // 2], "cut.png")


def test_too_many_pixels_is_refused_before_decoding():
    p = pipeline([1, 4, 4], {"resize": [4, 4]}, max_pixels=100)
    with pytest.raises(TooLarge, match=r"^big.png is 11×10 = 110 pixels; .* at most 100"):
        p(encode(Image.new("L", (11, 10))), "big.png")
    assert p(encode(Image.new("L", (10, 10)))).shape == (1, 4, 4)


def test_formats_outside_the_list_are_refused():
    data = encode(Image.new("RGB", (4, 4)), "PPM")
    with pytest.raises(InvalidInput, match="not an image convserve can read"):
        pipeline([3, 4, 4])(data)


def test_batch_stacks_in_order():
    p = pipeline([1, 2, 2], {"scale": 1})
    imgs = [(f"{v}.png", encode(Image.new("L", (2, 2), v))) for v in (1, 2, 3)]
    assert p.batch(imgs)[:, 0, 0, 0].tolist() == [1, 2, 3]


def test_the_version_document_pipeline_fills_every_default():
    spec = spec_of([3, 8, 8], {"name": "r", "type": "relu"})
    spec["input"]["preprocess"] = {"resize_shorter": 9, "center_crop": [8, 8], "mean": [0.5]}
    arch = Architecture.from_spec(spec)
    assert arch.image_preprocess == {
        "color": "RGB",
        "resize_shorter": 9,
        "center_crop": [8, 8],
        "interpolation": "bilinear",
        "scale": 1 / 255,
        "mean": [0.5, 0.5, 0.5],
        "std": [1.0, 1.0, 1.0],
        "size": [8, 8],
        "layout": "CHW",
    }
    assert image_preprocess({"shape": [2, 8, 8]}) is None  # two channels: not an image
    assert image_preprocess({"shape": [1, 64]}) is None


def test_an_unknown_interpolation_is_a_spec_error():
    spec = spec_of([1, 8, 8], {"name": "r", "type": "relu"})
    spec["input"]["preprocess"] = {"resize": [8, 8], "interpolation": "cubic-ish"}
    with pytest.raises(SpecError, match="interpolation"):
        Architecture.from_spec(spec)
