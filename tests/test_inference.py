"""Upscalers (whole, tiled, self-ensembled, bicubic), set scoring and comparison strips."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from edsr_mlflow import edsr_pyfunc, evaluation, images, inference, metrics, model, samples


@pytest.fixture(scope="module")
def tiny_x2():
    keras.utils.set_random_seed(0)
    return model.build_edsr(scale=2, blocks=1, filters=8)


@pytest.fixture
def lr_image() -> np.ndarray:
    """A random 37x29 (width x height) LR image."""
    return np.random.default_rng(0).integers(0, 256, (29, 37, 3), dtype=np.uint8)


@pytest.fixture
def pairs() -> list[images.ImagePair]:
    rng = np.random.default_rng(5)
    result = []
    for i, (height, width) in enumerate([(40, 48), (36, 52), (44, 44)]):
        yy, xx = np.mgrid[0:height, 0:width]
        base = np.stack([xx * 4 + 20, yy * 5 + 10, (xx + yy) * 2 + 40 * i], axis=-1).astype(np.float64)
        hr_image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        result.append(images.make_pair(f"img{i}.png", hr_image, 2))
    return result


@pytest.mark.parametrize("scale", [2, 3])
def test_tiled_inference_matches_whole_image(scale, lr_image):
    keras.utils.set_random_seed(1)
    net = model.build_edsr(scale=scale, blocks=1, filters=8)
    whole = inference.model_upscaler(net)(lr_image)
    tiled = inference.model_upscaler(net, tile=16, tile_overlap=16)(lr_image)
    assert whole.shape == tiled.shape == (29 * scale, 37 * scale, 3)
    assert whole.dtype == tiled.dtype == np.uint8
    assert np.abs(whole.astype(np.int16) - tiled.astype(np.int16)).max() <= 1

    hr_image = images.upscale_bicubic(lr_image, scale)
    difference = metrics.psnr(hr_image, whole, shave=scale) - metrics.psnr(hr_image, tiled, shave=scale)
    assert abs(difference) < 0.01


def test_tiles_without_context_show_seams(tiny_x2, lr_image):
    """The control for the test above: with no overlap the tile borders do differ."""
    whole = inference.model_upscaler(tiny_x2)(lr_image)
    seamed = inference.model_upscaler(tiny_x2, tile=16, tile_overlap=0)(lr_image)
    assert whole.shape == seamed.shape
    assert not np.array_equal(whole, seamed)


def test_whole_image_upscaler_is_the_rounded_model_output(tiny_x2, lr_image):
    expected = edsr_pyfunc.to_uint8(keras.ops.convert_to_numpy(tiny_x2(lr_image[None].astype(np.float32)))[0])
    np.testing.assert_array_equal(inference.model_upscaler(tiny_x2)(lr_image), expected)


def test_self_ensemble_shape_and_dtype(tiny_x2, lr_image):
    ensembled = inference.model_upscaler(tiny_x2, self_ensemble=True)(lr_image)
    assert ensembled.shape == (58, 74, 3)
    assert ensembled.dtype == np.uint8


def test_self_ensemble_undoes_every_flip_and_rotation(lr_image):
    """Nearest-neighbour upsampling commutes with flips/rotations, so its ensemble is itself."""
    nearest = keras.Sequential([keras.Input((None, None, 3)), keras.layers.UpSampling2D(2)])
    ensembled = inference.model_upscaler(nearest, self_ensemble=True)(lr_image)
    np.testing.assert_array_equal(ensembled, np.repeat(np.repeat(lr_image, 2, axis=0), 2, axis=1))


def test_self_ensemble_averages_several_passes(tiny_x2, lr_image):
    plain = inference.model_upscaler(tiny_x2)(lr_image)
    ensembled = inference.model_upscaler(tiny_x2, self_ensemble=True)(lr_image)
    assert not np.array_equal(plain, ensembled)
    tiled = inference.model_upscaler(tiny_x2, tile=16, tile_overlap=16, self_ensemble=True)(lr_image)
    assert np.abs(tiled.astype(np.int16) - ensembled.astype(np.int16)).max() <= 1


def test_bicubic_upscaler_matches_upscale_bicubic(lr_image):
    for scale in (2, 3, 4):
        np.testing.assert_array_equal(images.bicubic_upscaler(scale)(lr_image), images.upscale_bicubic(lr_image, scale))


def test_score_set_scores_every_image_against_bicubic(tiny_x2, pairs):
    scores = evaluation.score_set(inference.model_upscaler(tiny_x2), pairs, 2)
    assert [s.name for s in scores.per_image] == [p.name for p in pairs]
    assert [s.name for s in scores.bicubic_per_image] == [p.name for p in pairs]
    assert scores.psnr == pytest.approx(np.mean([s.psnr for s in scores.per_image]))
    assert scores.gain == pytest.approx(scores.psnr - scores.bicubic_psnr)
    assert scores.gain != 0
    for pair, bicubic in zip(pairs, scores.bicubic_per_image):
        expected = metrics.psnr(pair.hr_image, images.upscale_bicubic(pair.lr_image, 2), shave=2)
        assert bicubic.psnr == pytest.approx(expected)
    assert scores.seconds_per_megapixel >= 0
    table = scores.table()
    assert list(table["image"]) == [p.name for p in pairs]


def test_score_set_of_bicubic_has_no_gain_and_reuses_given_baseline(pairs):
    bicubic = evaluation.bicubic_set(pairs, 2)
    assert len(bicubic.per_image) == len(pairs)
    assert bicubic.gain == pytest.approx(0.0)
    distinct = {round(s.psnr, 6) for s in bicubic.per_image}
    assert len(distinct) == len(pairs)  # per-image scores, not one image repeated

    def nearest(lr_image):
        return np.repeat(np.repeat(lr_image, 2, axis=0), 2, axis=1)

    reused = evaluation.score_set(nearest, pairs, 2, bicubic=bicubic.per_image)
    assert reused.bicubic_per_image == bicubic.per_image
    assert reused.gain < 0  # nearest neighbour is worse than bicubic


def test_comparison_strip_is_four_labelled_panels(tiny_x2, pairs):
    pair = pairs[0]
    strip = samples.comparison_strip(pair, inference.model_upscaler(tiny_x2), 2, crop_lr=16)
    assert strip.dtype == np.uint8
    assert strip.ndim == 3 and strip.shape[2] == 3
    panel = 16 * 2
    assert strip.shape[1] >= 4 * panel
    assert strip.shape[0] == panel + samples.LABEL_HEIGHT
    # The HR panel (last) is the centre crop of the HR image.
    top, left, bottom, right = samples.center_crop_box(*pair.lr_image.shape[:2], 16)
    hr_crop = pair.hr_image[top * 2 : bottom * 2, left * 2 : right * 2]
    np.testing.assert_array_equal(strip[samples.LABEL_HEIGHT :, -panel:], hr_crop)


def test_comparison_strip_of_a_small_image_uses_the_whole_image(pairs):
    pair = pairs[1]  # LR 18x26, smaller than the default 64 px crop
    strip = samples.comparison_strip(pair, images.bicubic_upscaler(2), 2)
    side = min(pair.lr_image.shape[:2]) * 2
    assert strip.shape[0] == side + samples.LABEL_HEIGHT
    assert strip.shape[1] >= 4 * side


@pytest.mark.parametrize("upsampler", sorted(model.UPSAMPLERS))
def test_whole_image_inference_works_at_any_size_for_every_upsampler(upsampler):
    """make_forward traces once for unknown height and width; every upsampler must allow it."""
    upscale = inference.model_upscaler(model.build_edsr(4, blocks=1, filters=8, upsampler=upsampler))
    for height, width in ((9, 13), (16, 7)):
        lr_image = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
        assert upscale(lr_image).shape == (4 * height, 4 * width, 3)


def test_tiled_inference_holds_no_float_image_of_the_output(lr_image):
    """Tiled, each tile becomes uint8 as it comes: the largest numpy buffer is the uint8 output
    (a float32 one is 4x that: what made a 9000x9000 PNG take 13 GB)."""
    import tracemalloc

    nearest = keras.Sequential([keras.Input((None, None, 3)), keras.layers.UpSampling2D(2)])
    big = np.tile(lr_image, (16, 16, 1))  # 464 x 592 LR: 285 tiles
    upscale = inference.model_upscaler(nearest, tile=32, tile_overlap=16)
    upscale(big[:40, :40])  # trace the function outside the measurement
    tracemalloc.start()
    sr_image = upscale(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(sr_image, np.repeat(np.repeat(big, 2, axis=0), 2, axis=1))
    assert sr_image.nbytes <= peak < 2 * sr_image.nbytes


def test_tiled_inference_reports_its_progress(tiny_x2, lr_image):
    calls = []
    inference.model_upscaler(tiny_x2, tile=16, progress=lambda done, total: calls.append((done, total)))(lr_image)
    total = len(edsr_pyfunc.tile_boxes(*lr_image.shape[:2], 16))
    assert calls == [(done, total) for done in range(1, total + 1)] and total > 1
