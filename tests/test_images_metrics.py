"""Image decoding, bicubic resizing, the uint8 path, and PSNR/SSIM in the literature's protocol."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from edsr_mlflow import data, edsr_pyfunc, evaluation, images, metrics
from edsr_mlflow.errors import DataError
from edsr_mlflow.metrics import ImageScore

from helpers import SHARED_DATA, needs_shared_data


@pytest.fixture
def rgb_image() -> np.ndarray:
    """A 30x40 RGB image with texture: a gradient plus noise."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:30, 0:40]
    gradient = np.stack([xx * 6, yy * 8, (xx + yy) * 3], axis=-1).astype(np.float64)
    return np.clip(gradient + rng.normal(0, 20, gradient.shape), 0, 255).astype(np.uint8)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- load_rgb


def test_load_rgb_reads_rgb_png(tmp_path, rgb_image):
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb_image).save(path)
    loaded = images.load_rgb(path)
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, rgb_image)


def test_load_rgb_converts_grayscale(tmp_path, rgb_image):
    gray = rgb_image[..., 0]
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    assert Image.open(path).mode == "L"
    loaded = images.load_rgb(path)
    assert loaded.shape == (30, 40, 3) and loaded.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], gray)


def test_load_rgb_converts_palette(tmp_path, rgb_image):
    palette_image = Image.fromarray(rgb_image).quantize(colors=16)
    path = tmp_path / "palette.png"
    palette_image.save(path)
    assert Image.open(path).mode == "P"
    loaded = images.load_rgb(path)
    assert loaded.shape == (30, 40, 3) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, np.asarray(palette_image.convert("RGB")))
    assert len(np.unique(loaded.reshape(-1, 3), axis=0)) > 1


def test_load_rgb_converts_rgba_compositing_on_white(tmp_path, rgb_image):
    alpha = np.full(rgb_image.shape[:2], 255, np.uint8)
    alpha[:, :10] = 0  # fully transparent strip
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb_image, alpha])).save(path)
    assert Image.open(path).mode == "RGBA"
    loaded = images.load_rgb(path)
    assert loaded.shape == (30, 40, 3) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded[:, 10:], rgb_image[:, 10:])
    np.testing.assert_array_equal(loaded[:, :10], 255)


def test_load_rgb_applies_the_exif_orientation(tmp_path):
    # A phone photo stored landscape, 64x48, tagged "rotate 90 clockwise to view" (6): viewers
    # show it portrait 48x64, its stored top-left pixel at the top right.
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[images.EXIF_ORIENTATION] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    loaded = images.load_rgb(tmp_path / "phone.jpg")
    assert loaded.shape == (64, 48, 3)
    assert images.read_size(tmp_path / "phone.jpg") == (48, 64)  # (width, height) as loaded, from the header
    assert loaded[:4, -4:, 0].min() > 200 and loaded[:4, :4, 0].max() < 60  # red at the top right


@pytest.mark.parametrize("suffix, options", [(".gif", {}), (".tiff", {})])
def test_an_image_of_several_frames_is_refused_not_cut_to_its_first(tmp_path, rgb_image, suffix, options):
    frames = [Image.fromarray(rgb_image), Image.fromarray(255 - rgb_image)]
    path = tmp_path / f"two{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], **options)
    with pytest.raises(DataError, match=r"holds 2 frames"):
        images.load_rgb(path)


@pytest.mark.parametrize("name", ["out.png", "out.jpg"])  # our PNG writer, Pillow's JPEG one
def test_save_rgb_leaves_no_partial_file_when_the_disk_is_full(tmp_path, rgb_image, monkeypatch, name):
    import errno

    def fill_the_disk(*args, **kwargs):
        (tmp_path / next(p.name for p in tmp_path.iterdir())).write_bytes(b"half an image")
        raise OSError(errno.ENOSPC, "No space left on device")

    def pillow_fills_the_disk(image, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half an image")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images, "write_png_rows", fill_the_disk)
    monkeypatch.setattr(Image.Image, "save", pillow_fills_the_disk)
    with pytest.raises(DataError, match=rf"{name}: cannot write the image \(No space left on device\)"):
        images.save_rgb(rgb_image, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_save_rgb_replaces_the_output_whole(tmp_path, rgb_image):
    (tmp_path / "out.jpg").write_bytes(b"an older file")
    images.save_rgb(rgb_image, tmp_path / "out.jpg")
    assert Image.open(tmp_path / "out.jpg").format == "JPEG" and [p.name for p in tmp_path.iterdir()] == ["out.jpg"]


def test_missing_file_raises_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="no_such_image.png"):
        images.load_rgb(tmp_path / "no_such_image.png")


def test_random_bytes_raise_data_error_naming_the_file(tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="noise.png"):
        images.load_rgb(path)


@pytest.mark.parametrize("keep", [0.5, 0.1, 16 / 1000])
def test_truncated_png_raises_data_error_naming_the_file(tmp_path, rgb_image, keep):
    encoded = png_bytes(Image.fromarray(rgb_image))
    path = tmp_path / "truncated.png"
    path.write_bytes(encoded[: max(16, int(len(encoded) * keep))])
    with pytest.raises(DataError, match="truncated.png"):
        images.load_rgb(path)


def test_data_error_message_is_one_line(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"not an image at all")
    with pytest.raises(DataError) as error:
        images.load_rgb(path)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- cropping and resizing


@pytest.mark.parametrize(
    "shape, scale, expected",
    [((30, 40), 2, (30, 40)), ((31, 41), 2, (30, 40)), ((31, 41), 3, (30, 39)), ((33, 47), 4, (32, 44))],
)
def test_crop_to_multiple(shape, scale, expected):
    image = np.arange(shape[0] * shape[1] * 3, dtype=np.int64).reshape(*shape, 3)
    cropped = images.crop_to_multiple(image, scale)
    assert cropped.shape == (*expected, 3)
    # Crops bottom and right: the top-left corner is kept.
    np.testing.assert_array_equal(cropped, image[: expected[0], : expected[1]])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_downscale_and_upscale_shapes(scale):
    hr_image = np.random.default_rng(scale).integers(0, 256, (12 * scale, 7 * scale, 3), dtype=np.uint8)
    lr_image = images.downscale(hr_image, scale)
    assert lr_image.shape == (12, 7, 3) and lr_image.dtype == np.uint8
    up = images.upscale_bicubic(lr_image, scale)
    assert up.shape == hr_image.shape and up.dtype == np.uint8


def test_downscale_rejects_size_not_multiple_of_scale():
    with pytest.raises(ValueError, match="multiple"):
        images.downscale(np.zeros((10, 9, 3), np.uint8), 2)


def test_bicubic_preserves_constant_images():
    flat = np.full((12, 18, 3), 77, np.uint8)
    np.testing.assert_array_equal(images.downscale(flat, 3), 77)
    np.testing.assert_array_equal(images.upscale_bicubic(flat, 3), 77)


# ---------------------------------------------------------------- to_uint8 (edsr_pyfunc)


@pytest.mark.parametrize(
    "value, expected",
    [(-3.2, 0), (-0.4, 0), (0.4, 0), (1.5, 2), (2.5, 2), (3.5, 4), (127.49, 127), (254.6, 255), (255.4, 255), (1e4, 255)],
)
def test_to_uint8_clips_and_rounds_half_to_even(value, expected):
    out = edsr_pyfunc.to_uint8(np.array([[[value, value, value]]], np.float32))
    assert out.dtype == np.uint8
    assert out[0, 0, 0] == expected


def test_to_uint8_accepts_arrays_of_any_float_dtype():
    out = edsr_pyfunc.to_uint8(np.array([[0.6, 300.0], [-5.0, 99.5]], np.float64))
    np.testing.assert_array_equal(out, np.array([[1, 255], [0, 100]], np.uint8))


# ---------------------------------------------------------------- PSNR


@pytest.mark.parametrize("channel", metrics.CHANNELS)
def test_psnr_identical_is_inf(rgb_image, channel):
    assert metrics.psnr(rgb_image, rgb_image.copy(), shave=2, channel=channel) == math.inf


def test_psnr_of_known_mse_rgb():
    hr_image = np.full((20, 20, 3), 100, np.uint8)
    sr_image = hr_image + 1
    assert metrics.psnr(hr_image, sr_image, shave=0, channel="rgb") == pytest.approx(48.1308, abs=1e-4)
    # MSE 4 -> 20 log10(255) - 10 log10(4)
    assert metrics.psnr(hr_image, hr_image + 2, shave=3, channel="rgb") == pytest.approx(
        20 * math.log10(255) - 10 * math.log10(4), abs=1e-9
    )


def test_psnr_y_uses_luma_difference():
    hr_image = np.full((20, 20, 3), 100, np.uint8)
    sr_image = hr_image + 1
    # Y differs by (65.481 + 128.553 + 24.966) / 255 = 219 / 255 everywhere.
    expected = 10 * math.log10(255**2 / (219 / 255) ** 2)
    assert metrics.psnr(hr_image, sr_image, shave=0, channel="y") == pytest.approx(expected, abs=1e-9)
    # Blue matters least, green most.
    blue, green = hr_image.copy(), hr_image.copy()
    blue[..., 2] += 10
    green[..., 1] += 10
    assert metrics.psnr(hr_image, blue, shave=0) > metrics.psnr(hr_image, green, shave=0)


def test_psnr_does_not_overflow_uint8():
    hr_image = np.zeros((8, 8, 3), np.uint8)
    sr_image = np.full((8, 8, 3), 255, np.uint8)
    assert metrics.psnr(hr_image, sr_image, shave=0, channel="rgb") == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("shave", [1, 2, 4])
def test_shave_removes_borders(rgb_image, shave):
    damaged = rgb_image.copy()
    damaged[:shave] = 0
    damaged[-shave:] = 255
    damaged[:, :shave] = 0
    damaged[:, -shave:] = 255
    assert metrics.psnr(rgb_image, damaged, shave=shave) == math.inf
    assert metrics.psnr(rgb_image, damaged, shave=shave, channel="rgb") == math.inf
    assert metrics.psnr(rgb_image, damaged, shave=shave - 1) < 40
    assert metrics.ssim(rgb_image, damaged, shave=shave) == pytest.approx(1.0)


def test_shave_that_leaves_nothing_is_an_error(rgb_image):
    with pytest.raises(ValueError, match="shave"):
        metrics.psnr(rgb_image, rgb_image, shave=15)


def test_unknown_channel_is_an_error(rgb_image):
    with pytest.raises(ValueError, match="y, rgb"):
        metrics.psnr(rgb_image, rgb_image, shave=0, channel="ycbcr")


@pytest.mark.parametrize("metric", [metrics.psnr, metrics.ssim])
def test_shape_mismatch_raises_value_error(rgb_image, metric):
    with pytest.raises(ValueError, match="shapes differ"):
        metric(rgb_image, rgb_image[:-1], shave=0)


# ---------------------------------------------------------------- Y channel


@pytest.mark.parametrize(
    "rgb, expected",
    [((255, 255, 255), 235.0), ((0, 0, 0), 16.0), ((255, 0, 0), 16 + 65.481), ((0, 255, 0), 16 + 128.553), ((0, 0, 255), 16 + 24.966)],
)
def test_rgb_to_y_bt601(rgb, expected):
    image = np.full((2, 3, 3), rgb, np.uint8)
    y = metrics.rgb_to_y(image)
    assert y.shape == (2, 3)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, expected, atol=1e-9)


# ---------------------------------------------------------------- SSIM


def test_ssim_identical_is_one(rgb_image):
    assert metrics.ssim(rgb_image, rgb_image, shave=2) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim(rgb_image, rgb_image, shave=2, channel="rgb") == pytest.approx(1.0, abs=1e-12)


@pytest.fixture(params=[0, 1, 2])
def noisy_pair(request) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(10 + request.param)
    yy, xx = np.mgrid[0:37, 0:45]
    base = np.stack([np.sin(xx / 5) * 90 + 120, np.cos(yy / 4) * 80 + 110, (xx * yy) % 200], axis=-1)
    hr_image = np.clip(base + rng.normal(0, 15, base.shape), 0, 255).astype(np.uint8)
    sr_image = np.clip(hr_image + rng.normal(0, 10 * (request.param + 1), base.shape), 0, 255).astype(np.uint8)
    return hr_image, sr_image


@pytest.mark.parametrize("shave", [0, 3])
def test_ssim_matches_skimage_on_y(noisy_pair, shave):
    hr_image, sr_image = noisy_pair
    hr_y, sr_y = metrics.rgb_to_y(hr_image), metrics.rgb_to_y(sr_image)
    if shave:
        hr_y, sr_y = hr_y[shave:-shave, shave:-shave], sr_y[shave:-shave, shave:-shave]
    expected = structural_similarity(
        hr_y, sr_y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    ours = metrics.ssim(hr_image, sr_image, shave=shave)
    assert ours == pytest.approx(expected, abs=1e-6)
    assert ours < 0.99


def test_ssim_rgb_averages_channels(noisy_pair):
    hr_image, sr_image = noisy_pair
    expected = np.mean(
        [
            structural_similarity(
                hr_image[..., c].astype(np.float64),
                sr_image[..., c].astype(np.float64),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=255,
            )
            for c in range(3)
        ]
    )
    assert metrics.ssim(hr_image, sr_image, shave=0, channel="rgb") == pytest.approx(expected, abs=1e-6)


def test_ssim_decreases_with_noise(rgb_image):
    rng = np.random.default_rng(3)
    light = np.clip(rgb_image + rng.normal(0, 3, rgb_image.shape), 0, 255).astype(np.uint8)
    heavy = np.clip(rgb_image + rng.normal(0, 30, rgb_image.shape), 0, 255).astype(np.uint8)
    assert 1.0 > metrics.ssim(rgb_image, light, shave=0) > metrics.ssim(rgb_image, heavy, shave=0)


def test_ssim_needs_an_11_pixel_window():
    small = np.zeros((14, 14, 3), np.uint8)
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(small, small, shave=2)


# ---------------------------------------------------------------- per-image averaging


def test_mean_scores_averages_over_images():
    scores = [
        ImageScore("a.png", psnr=30.0, ssim=0.90, psnr_rgb=28.0),
        ImageScore("b.png", psnr=33.0, ssim=0.80, psnr_rgb=31.0),
        ImageScore("c.png", psnr=36.0, ssim=0.70, psnr_rgb=37.0),
    ]
    means = metrics.mean_scores(scores)
    assert means["psnr"] == pytest.approx(33.0)
    assert means["ssim"] == pytest.approx(0.80)
    assert means["psnr_rgb"] == pytest.approx(32.0)
    # Works on a one-shot iterator too.
    assert metrics.mean_scores(iter(scores))["psnr"] == pytest.approx(33.0)


def test_mean_scores_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no images"):
        metrics.mean_scores([])


def test_score_image_uses_y_psnr_y_ssim_and_rgb_psnr(noisy_pair):
    hr_image, sr_image = noisy_pair
    score = metrics.score_image("x.png", hr_image, sr_image, shave=2)
    assert score.name == "x.png"
    assert score.psnr == metrics.psnr(hr_image, sr_image, shave=2, channel="y")
    assert score.psnr_rgb == metrics.psnr(hr_image, sr_image, shave=2, channel="rgb")
    assert score.ssim == metrics.ssim(hr_image, sr_image, shave=2, channel="y")
    assert score.psnr != score.psnr_rgb


# ---------------------------------------------------------------- published reference numbers

MEASURED_BICUBIC = {
    ("Set5", 2): 33.67,
    ("Set5", 3): 30.40,
    ("Set5", 4): 28.43,
    ("Set14", 2): 30.33,
    ("Set14", 3): 27.63,
    ("Set14", 4): 26.09,
}
SET_SIZES = {"Set5": 5, "Set14": 14}


@pytest.mark.shared_data
@needs_shared_data
@pytest.mark.parametrize("benchmark, scale", list(MEASURED_BICUBIC))
def test_bicubic_y_psnr_matches_measured_reference(benchmark, scale):
    name, pairs = data.load_eval_set(benchmark.lower(), scale, SHARED_DATA)
    assert name == benchmark.lower()
    assert len(pairs) == SET_SIZES[benchmark]
    for pair in pairs:
        assert pair.lr_image.ndim == 3 and pair.lr_image.shape[2] == 3
        assert pair.hr_image.shape == (pair.lr_image.shape[0] * scale, pair.lr_image.shape[1] * scale, 3)
    if benchmark == "Set14":
        bridge = {pair.name: pair for pair in pairs}["bridge.png"]  # grayscale file, loaded as RGB
        np.testing.assert_array_equal(bridge.hr_image[..., 0], bridge.hr_image[..., 1])
        np.testing.assert_array_equal(bridge.hr_image[..., 0], bridge.hr_image[..., 2])
    scores = evaluation.bicubic_set(pairs, scale)
    assert len(scores.per_image) == SET_SIZES[benchmark]
    assert scores.psnr == pytest.approx(MEASURED_BICUBIC[benchmark, scale], abs=0.02)
    assert scores.bicubic_psnr == pytest.approx(scores.psnr)
