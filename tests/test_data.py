"""Image sources (files, hold-out, sizes) and tf.data pipelines: skipping bad files, hold-out, aligned patches, determinism."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from edsr_mlflow import data, images, sources
from edsr_mlflow.errors import DataError


def synthetic_image(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth colour field with fine noise: structure at several scales, like a photo."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    smooth = images.resize_bicubic(coarse, width, height).astype(np.float64)
    return np.clip(smooth + rng.normal(0, 3, smooth.shape), 0, 255).astype(np.uint8)


def write_png(path: Path, image: np.ndarray) -> Path:
    Image.fromarray(image).save(path)
    return path


@pytest.fixture
def image_dir(tmp_path) -> Path:
    """12 good images (60-90 px), named so that sorting is predictable."""
    directory = tmp_path / "hr"
    directory.mkdir()
    for i in range(12):
        write_png(directory / f"img_{i:02d}.png", synthetic_image(60 + i, 90 - i, seed=i))
    return directory


# ---------------------------------------------------------------- load_pairs


def test_load_pairs_makes_exact_multiples(image_dir):
    paths = sorted(image_dir.iterdir())[:3]
    pairs, info = sources.load_pairs(paths, 3, 8, "synthetic")
    assert [pair.name for pair in pairs] == [p.name for p in paths]
    for pair in pairs:
        assert pair.hr_image.dtype == np.uint8 and pair.lr_image.dtype == np.uint8
        assert pair.hr_image.shape == (pair.lr_image.shape[0] * 3, pair.lr_image.shape[1] * 3, 3)
        np.testing.assert_array_equal(pair.lr_image, images.downscale(pair.hr_image, 3))
    assert info.num_images == 3 and info.name == "synthetic"
    assert info.image_names == tuple(p.name for p in paths)


def test_load_pairs_digest_follows_content(image_dir, tmp_path):
    paths = sorted(image_dir.iterdir())[:2]
    _, first = sources.load_pairs(paths, 2, 8, "a")
    _, again = sources.load_pairs(paths, 2, 8, "a")
    assert first.digest == again.digest
    write_png(paths[1], synthetic_image(70, 70, seed=99))
    _, changed = sources.load_pairs(paths, 2, 8, "a")
    assert changed.digest != first.digest


def test_load_pairs_skips_and_names_corrupt_and_small_files(tmp_path, caplog):
    good = write_png(tmp_path / "good.png", synthetic_image(64, 80, seed=0))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    small = write_png(tmp_path / "small.png", synthetic_image(20, 50, seed=1))
    with caplog.at_level(logging.WARNING, logger="edsr_mlflow.sources"):
        pairs, info = sources.load_pairs([corrupt, good, small], 2, 16, "mixed")
    assert [pair.name for pair in pairs] == ["good.png"]
    assert info.num_images == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("corrupt.png" in message for message in warnings)
    assert any("small.png" in message and "20" in message for message in warnings)
    assert not any("good.png" in message for message in warnings)


def test_load_pairs_with_nothing_usable_raises(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    small = write_png(tmp_path / "small.png", synthetic_image(20, 20, seed=1))
    with pytest.raises(DataError) as error:
        sources.load_pairs([corrupt, small], 2, 16, "broken set")
    message = str(error.value)
    assert "broken set" in message
    assert "corrupt.png" in message or "small.png" in message
    assert "\n" not in message


def test_directory_image_paths_missing_dir_raises(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        sources.directory_image_paths(tmp_path / "nowhere")


def test_directory_image_paths_without_images_raises(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="no PNG/JPEG/BMP"):
        sources.directory_image_paths(tmp_path)


def test_directory_image_paths_lists_images_sorted(image_dir):
    (image_dir / "readme.txt").write_text("ignored")
    paths = sources.directory_image_paths(image_dir)
    assert [p.name for p in paths] == [f"img_{i:02d}.png" for i in range(12)]


# ---------------------------------------------------------------- splits


def test_split_holds_out_every_tenth_image(image_dir):
    train, val, train_label, val_label = sources.split_paths(str(image_dir), None)
    assert [p.name for p in val] == ["img_00.png", "img_10.png"]
    assert [p.name for p in train] == [f"img_{i:02d}.png" for i in range(12) if i not in (0, 10)]
    assert not set(train) & set(val)
    assert "held out" in val_label and "train" in train_label
    # Deterministic: the same split every time.
    assert sources.split_paths(str(image_dir), None)[:2] == (train, val)


def test_split_uses_val_dataset_when_given(image_dir, tmp_path):
    val_dir = tmp_path / "val"
    val_dir.mkdir()
    for name in ("v1.png", "v2.png"):
        write_png(val_dir / name, synthetic_image(40, 40, seed=5))
    train, val, _, val_label = sources.split_paths(str(image_dir), str(val_dir))
    assert len(train) == 12
    assert [p.name for p in val] == ["v1.png", "v2.png"]
    assert val_label == str(val_dir)


def test_split_of_one_image_without_val_dataset_raises(tmp_path):
    write_png(tmp_path / "only.png", synthetic_image(40, 40, seed=0))
    with pytest.raises(DataError, match="val_dataset"):
        sources.split_paths(str(tmp_path), None)


def refusal(call) -> str | None:
    try:
        call()
    except DataError as error:
        return str(error)
    return None


@pytest.mark.parametrize("case", ["missing", "a file", "one image", "all too small", "validation too small", "fine"])
def test_the_header_check_refuses_what_loading_refuses_with_the_same_words(case, image_dir, tmp_path):
    """`train` checks sources from file headers before TensorFlow loads; whatever it lets
    through, loading accepts, and whatever it refuses, loading refuses in the same words."""
    dataset, val_dataset, patch = str(image_dir), None, 8
    if case == "missing":
        dataset = str(tmp_path / "nowhere")
    elif case == "a file":
        dataset = str(image_dir / "img_00.png")
    elif case == "one image":
        (tmp_path / "one").mkdir()
        dataset = str(write_png(tmp_path / "one" / "only.png", synthetic_image(40, 40, seed=0)).parent)
    elif case == "all too small":
        patch = 100
    elif case == "validation too small":
        (tmp_path / "tiny").mkdir()
        val_dataset = str(write_png(tmp_path / "tiny" / "t.png", synthetic_image(12, 12, seed=0)).parent)
    told = refusal(lambda: sources.check_training_sources(dataset, val_dataset, 2, patch))
    assert told == refusal(lambda: data.load_sr_data(dataset, 2, patch, val_dataset=val_dataset))
    assert (told is None) == (case == "fine")


def test_sample_source_loads_without_download():
    sr_data = data.load_sr_data("sample", 2, 24)
    assert sr_data.train_info.num_images == len(sources.SAMPLE_TRAIN_FILES)
    assert len(sr_data.val_pairs) == len(sources.SAMPLE_VAL_FILES) >= 1
    for pair in sr_data.val_pairs:
        lr_height, lr_width = pair.lr_image.shape[:2]
        assert pair.hr_image.shape == (lr_height * 2, lr_width * 2, 3)
        assert min(lr_height, lr_width) > 24  # whole images, not patches
    lr_image, hr_image = next(iter(sr_data.train_images))
    assert lr_image.dtype == tf.uint8 and hr_image.dtype == tf.uint8
    assert tuple(hr_image.shape) == (lr_image.shape[0] * 2, lr_image.shape[1] * 2, 3)


def test_load_sr_data_from_directory(image_dir):
    sr_data = data.load_sr_data(str(image_dir), 3, 8)
    assert sr_data.train_info.num_images == 10
    assert [pair.name for pair in sr_data.val_pairs] == ["img_00.png", "img_10.png"]
    assert sum(1 for _ in sr_data.train_images) == 10


# ---------------------------------------------------------------- random patches


def lr_hr(scale: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    hr_image = images.crop_to_multiple(synthetic_image(22 * scale, 26 * scale, seed), scale)
    return images.downscale(hr_image, scale), hr_image


def shifted_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest mean absolute difference when ``a`` is moved one pixel in any direction."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return min(
        np.abs(a[1:] - b[:-1]).mean(),
        np.abs(a[:-1] - b[1:]).mean(),
        np.abs(a[:, 1:] - b[:, :-1]).mean(),
        np.abs(a[:, :-1] - b[:, 1:]).mean(),
    )


def is_plain_crop(patch: np.ndarray, image: np.ndarray) -> bool:
    size = patch.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size, 3))[:, :, 0]
    return bool(np.any(np.all(windows == patch, axis=(2, 3, 4))))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_random_patches_are_aligned(scale):
    lr_image, hr_image = lr_hr(scale)
    patch_size, count = 8, 16
    lr_patches, hr_patches = data.random_patches(
        lr_image, hr_image, tf.constant([3, 4], tf.int64), scale=scale, patch_size=patch_size, count=count
    )
    lr_patches, hr_patches = lr_patches.numpy(), hr_patches.numpy()
    assert lr_patches.shape == (count, patch_size, patch_size, 3)
    assert hr_patches.shape == (count, patch_size * scale, patch_size * scale, 3)
    assert lr_patches.dtype == np.float32 and hr_patches.dtype == np.float32
    assert np.array_equal(lr_patches, np.rint(lr_patches)) and np.array_equal(hr_patches, np.rint(hr_patches))
    lr_patches, hr_patches = lr_patches.astype(np.uint8), hr_patches.astype(np.uint8)
    for lr_patch, hr_patch in zip(lr_patches, hr_patches):
        downscaled = images.downscale(hr_patch, scale)
        assert np.abs(downscaled.astype(np.float64) - lr_patch).mean() < 2
        assert shifted_distance(downscaled, lr_patch) > 5


def test_random_patches_augment_lr_and_hr_identically():
    scale = 2
    lr_image, hr_image = lr_hr(scale, seed=7)
    lr_patches, hr_patches = data.random_patches(
        lr_image, hr_image, tf.constant([0, 1], tf.int64), scale=scale, patch_size=8, count=16
    )
    lr_patches, hr_patches = lr_patches.numpy().astype(np.uint8), hr_patches.numpy().astype(np.uint8)
    # The augmentation is on: some patches are flipped or rotated, not plain crops...
    assert not all(is_plain_crop(patch, lr_image) for patch in lr_patches)
    # ...and every flip/rotation was applied to both halves of the pair.
    for lr_patch, hr_patch in zip(lr_patches, hr_patches):
        assert np.abs(images.downscale(hr_patch, scale).astype(np.float64) - lr_patch).mean() < 2


def test_random_patches_are_reproducible_from_the_seed():
    lr_image, hr_image = lr_hr(2)

    def cut(seed):
        return [
            t.numpy()
            for t in data.random_patches(lr_image, hr_image, tf.constant(seed, tf.int64), scale=2, patch_size=8, count=4)
        ]

    first, again, other = cut([5, 6]), cut([5, 6]), cut([5, 7])
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


# ---------------------------------------------------------------- training batches


@pytest.fixture
def pair_list() -> list[images.ImagePair]:
    return [images.make_pair(f"p{i}.png", synthetic_image(40 + 4 * i, 48, seed=20 + i), 2) for i in range(4)]


def batches(pairs, seed: int, n: int = 3, **overrides):
    kwargs = dict(scale=2, patch_size=8, batch_size=4, seed=seed, patches_per_image=4, image_shuffle_buffer=4)
    ds = data.training_batches(data.pairs_dataset(pairs), **{**kwargs, **overrides})
    return [(lr.numpy(), hr.numpy()) for lr, hr in ds.take(n)]


def test_training_batches_shapes_and_dtype(pair_list):
    for lr_batch, hr_batch in batches(pair_list, seed=1):
        assert lr_batch.shape == (4, 8, 8, 3) and lr_batch.dtype == np.float32
        assert hr_batch.shape == (4, 16, 16, 3) and hr_batch.dtype == np.float32
        assert 0 <= lr_batch.min() and lr_batch.max() <= 255
        for lr_patch, hr_patch in zip(lr_batch, hr_batch):
            downscaled = images.downscale(hr_patch.astype(np.uint8), 2).astype(np.float64)
            assert np.abs(downscaled - lr_patch).mean() < 2


def test_training_batches_are_deterministic_for_a_seed(pair_list):
    first = batches(pair_list, seed=3)
    again = batches(pair_list, seed=3)
    other = batches(pair_list, seed=4)
    assert len(first) == len(again) == len(other) == 3
    for (lr_a, hr_a), (lr_b, hr_b) in zip(first, again):
        np.testing.assert_array_equal(lr_a, lr_b)
        np.testing.assert_array_equal(hr_a, hr_b)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, other))


def test_training_batches_drop_images_smaller_than_a_patch():
    # The large image's pixels are all <= 100; the small one is white, so any of its pixels shows.
    large = synthetic_image(48, 48, seed=0) // 3
    small = np.full((10, 12, 3), 255, np.uint8)  # LR 5x6 < patch 8
    pairs = [images.make_pair("small.png", small, 2), images.make_pair("large.png", large, 2)]
    for lr_batch, hr_batch in batches(pairs, seed=0, n=4):
        assert lr_batch.shape == (4, 8, 8, 3)
        assert lr_batch.max() <= 100 and hr_batch.max() <= 100


# ---------------------------------------------------------------- DIV2K


def test_div2k_builder_without_data_raises_data_error(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(data, "_can_reach", lambda host, port, timeout_s=3.0: False)
    with pytest.raises(DataError) as error:
        data.div2k_builder(2, data_dir=str(tmp_path), manual_dir=str(tmp_path / "manual"))
    message = str(error.value)
    for name in ("DIV2K_train_HR.zip", "DIV2K_valid_HR.zip", "DIV2K_train_LR_bicubic_X2.zip", "DIV2K_valid_LR_bicubic_X2.zip"):
        assert name in message
    assert "sample" in message
    assert str(tmp_path / "manual") in message
    assert "\n" not in message
