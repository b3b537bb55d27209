"""The tf.data pipelines of super-resolution, from the files ``sources`` names, and DIV2K.

One ``dataset`` value picks the source:

- ``"div2k"``: TensorFlow Datasets ``div2k/bicubic_x{scale}`` (800 train / 100 validation).
- ``"sample"``: a few real photographs that ship inside scikit-image: no download at all.
- a directory of HR images (PNG/JPEG/BMP, any size): LR made by MATLAB-like bicubic
  downscaling after cropping HR to a multiple of the scale.

Training pairs are random (LR patch, HR patch) crops with random flips and 90-degree
rotations; validation and test pairs are whole images, never random crops.
Each image is decoded once and yields several patches per visit, so decoding is never
on the training step's critical path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import tensorflow as tf

from .errors import DataError
from .images import DatasetInfo, ImagePair, resolve_eval_source
from .schema import DIV2K
from .sources import directory_image_paths, load_pairs, local_files

log = logging.getLogger(__name__)

PATCHES_PER_IMAGE = 16  # patches cut from one decoded image per visit


def _digest(parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- DIV2K through TFDS


def div2k_name(scale: int) -> str:
    return f"div2k/bicubic_x{scale}"


def div2k_builder(scale: int, data_dir: str | None = None, manual_dir: str | None = None):
    """The TFDS builder for DIV2K at ``scale``, prepared if possible.

    Honours ``TFDS_DATA_DIR`` (or ``data_dir``) and a manual download directory
    (``manual_dir``, by default ``<data_dir>/downloads/manual``): the official zip files
    placed there (:func:`div2k_zip_names`: ``DIV2K_train_HR.zip``, ``DIV2K_valid_HR.zip``,
    ``DIV2K_{train,valid}_LR_bicubic_X{scale}.zip``) are used without any network access;
    TFDS checks each against the size and SHA-256 it records for the official file.

    Raises:
        DataError: DIV2K is neither prepared nor obtainable, or a zip is not the official file.
    """
    import tensorflow_datasets as tfds  # heavy; only needed for DIV2K

    with _quiet_absl():  # not "Variant folder ... has no dataset_info.json" before every preparation
        builder = tfds.builder(div2k_name(scale), data_dir=data_dir)
        if builder.is_prepared():
            return builder
    manual_dir = Path(manual_dir or Path(builder.data_dir_root) / "downloads" / "manual").expanduser()
    missing = [name for name in div2k_zip_names(builder) if not (manual_dir / name).exists()]
    if missing and not _can_reach("data.vision.ee.ethz.ch", 443):
        raise DataError(
            f"DIV2K x{scale} is not prepared in {builder.data_dir_root} and cannot be downloaded: "
            f"put {', '.join(missing)} in {manual_dir} (or set TFDS_DATA_DIR), "
            "or train offline with dataset=sample or dataset=/path/to/hr_images"
        )
    _check_zip_sizes(builder, manual_dir)
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    except Exception as error:  # TFDS raises many kinds; the user needs one line
        raise DataError(_preparation_failure(builder, scale, manual_dir, error)) from None
    return builder


@contextlib.contextmanager
def _quiet_absl():
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl_logger.setLevel(level)


def div2k_zip_names(builder) -> list[str]:
    """The official zip files the builder's configuration reads (HR and LR, train and valid)."""
    return sorted(PurePosixPath(url).name for url in builder.builder_config.download_urls.values())


def _check_zip_sizes(builder, manual_dir: Path) -> None:
    """Refuses, before TFDS reads gigabytes, a zip whose size is not the official file's."""
    recorded = builder.url_infos or {}
    for url in builder.builder_config.download_urls.values():
        info, path = recorded.get(url), manual_dir / PurePosixPath(url).name
        if info is not None and path.exists() and path.stat().st_size != info.size:
            raise DataError(
                f"{path} has {path.stat().st_size:,} bytes, the official {path.name} {info.size:,}: "
                f"it is partial or another file; download it again from {url}"
            )


def _preparation_failure(builder, scale: int, manual_dir: Path, error: Exception) -> str:
    """One line for a failed preparation, naming the zip at fault where TFDS's message does."""
    if type(error).__name__ == "NonMatchingChecksumError":
        for url in builder.builder_config.download_urls.values():
            if url in str(error):
                name = PurePosixPath(url).name
                return (
                    f"{manual_dir / name} is not the official {name} (its SHA-256 differs from the one "
                    f"TensorFlow Datasets records); download it again from {url}"
                )
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"preparing DIV2K x{scale} failed ({type(error).__name__}: {first_line}); check the zip files in {manual_dir}"


def _can_reach(host: str, port: int, timeout_s: float = 3.0) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def div2k_image_dataset(builder, split: str) -> tf.data.Dataset:
    """Whole (LR, HR) uint8 image pairs of a DIV2K split ("train" or "validation")."""
    ds = builder.as_dataset(split=split, shuffle_files=False)
    return ds.map(lambda example: (example["lr"], example["hr"]), num_parallel_calls=tf.data.AUTOTUNE)


def div2k_validation_pairs(builder) -> list[ImagePair]:
    ds = builder.as_dataset(split="validation", shuffle_files=False)
    names = div2k_validation_names(builder.info.splits["validation"].num_examples, builder.builder_config.name)
    return [ImagePair(name, example["lr"], example["hr"]) for name, example in zip(names, ds.as_numpy_iterator())]


def div2k_validation_names(count: int, config_name: str) -> list[str]:
    """DIV2K's file names (``0801.png``...) in the order TFDS returns the validation split.

    TFDS stores examples sorted by the MD5 of their key salted with the split's name (the
    LR file name, ``0801x2.png``), not by file name; the names are recomputed from that rule
    (the DIV2K end-to-end test checks them against the images' contents)."""
    from tensorflow_datasets.core import hashing

    suffix = config_name.rsplit("_", 1)[-1]  # "x2" of "bicubic_x2"
    keys = [f"{number:04d}{suffix}.png" for number in range(801, 801 + count)]
    hasher = hashing.Hasher("validation")
    return [f"{key[:4]}.png" for key in sorted(keys, key=hasher.hash_key)]


def div2k_info(builder, split: str) -> DatasetInfo:
    source = f"tfds:{builder.name}/{builder.builder_config.name}:{builder.version}"  # tfds:div2k/bicubic_x2:2.0.0
    return DatasetInfo(
        name=f"{source}:{split}",
        source=source,
        digest=_digest([builder.name, builder.builder_config.name, builder.version, split]),
        num_images=builder.info.splits[split].num_examples,
    )


# ---------------------------------------------------------------- tf.data pipelines


def pairs_dataset(pairs: list[ImagePair]) -> tf.data.Dataset:
    """Whole (LR, HR) uint8 images from decoded pairs, no copy per epoch."""

    def generate():
        for pair in pairs:
            yield pair.lr_image, pair.hr_image

    spec = tf.TensorSpec((None, None, 3), tf.uint8)
    return tf.data.Dataset.from_generator(generate, output_signature=(spec, spec))


def random_patches(lr_image, hr_image, seed, *, scale: int, patch_size: int, count: int):
    """``count`` aligned random crops of one image pair, each randomly flipped and rotated.

    Args:
        lr_image: (h, w, 3) LR image; hr_image: (h*scale, w*scale, 3).
        seed: int32/int64 tensor of shape (2,), for stateless (reproducible) randomness.
        patch_size: LR patch side; the HR patch side is ``patch_size * scale``.

    Returns:
        (count, p, p, 3) LR patches and (count, p*scale, p*scale, 3) HR patches, float32 in
        0..255 (whole numbers): cast once cropped, since oneDNN's transpose has no uint8 kernel
        on most CPUs (and says so on stderr).
    """
    seeds = tf.random.experimental.stateless_split(seed, 5)
    lr_height, lr_width = tf.shape(lr_image)[0], tf.shape(lr_image)[1]
    top = tf.random.stateless_uniform([count], seeds[0], 0, lr_height - patch_size + 1, tf.int32)
    left = tf.random.stateless_uniform([count], seeds[1], 0, lr_width - patch_size + 1, tf.int32)
    lr_patches = _crop(lr_image, top, left, patch_size)
    hr_patches = _crop(hr_image, top * scale, left * scale, patch_size * scale)
    lr_patches, hr_patches = tf.cast(lr_patches, tf.float32), tf.cast(hr_patches, tf.float32)
    # Horizontal flip, vertical flip and transpose, each with p = 1/2: the eight flips and
    # 90-degree rotations, uniformly.
    for i, transform in enumerate((_flip_left_right, _flip_up_down, _transpose), start=2):
        chosen = tf.random.stateless_uniform([count], seeds[i]) < 0.5
        lr_patches = _where(chosen, transform(lr_patches), lr_patches)
        hr_patches = _where(chosen, transform(hr_patches), hr_patches)
    return lr_patches, hr_patches


def _crop(image, top, left, size: int):
    """Crops (size, size) windows at per-patch offsets: (H, W, C) -> (n, size, size, C)."""
    offsets = tf.range(size)
    rows = tf.gather(image, top[:, None] + offsets[None, :], axis=0)  # (n, size, W, C)
    return tf.gather(rows, left[:, None] + offsets[None, :], axis=2, batch_dims=1)  # (n, size, size, C)


def _flip_left_right(patches):
    return tf.reverse(patches, axis=[2])


def _flip_up_down(patches):
    return tf.reverse(patches, axis=[1])


def _transpose(patches):
    return tf.transpose(patches, [0, 2, 1, 3])


def _where(chosen, if_true, if_false):
    return tf.where(chosen[:, None, None, None], if_true, if_false)


def training_batches(
    image_pairs: tf.data.Dataset,
    *,
    scale: int,
    patch_size: int,
    batch_size: int,
    seed: int,
    patches_per_image: int = PATCHES_PER_IMAGE,
    image_shuffle_buffer: int = 64,
) -> tf.data.Dataset:
    """An endless, seeded stream of (LR, HR) float32 batches in 0..255 from whole image pairs.

    Images smaller than one patch are dropped here too (directory sources already reported them).
    ``image_pairs`` should be cached (decoded once) by the caller.
    """
    def large_enough(lr_image, hr_image):
        return tf.reduce_min(tf.shape(lr_image)[:2]) >= patch_size

    def cut(index, pair):
        lr_image, hr_image = pair
        return random_patches(
            lr_image, hr_image, tf.stack([tf.cast(seed, tf.int64), index]),
            scale=scale, patch_size=patch_size, count=patches_per_image,
        )

    ds = (
        image_pairs.filter(large_enough)
        .shuffle(image_shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .enumerate()
        .map(cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .unbatch()
        .shuffle(4 * patches_per_image * max(1, batch_size // patches_per_image + 1), seed=seed + 1)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


def cache_images(ds: tf.data.Dataset, total_bytes: int, cache_dir: str | Path | None) -> tf.data.Dataset:
    """Caches decoded images in memory when they fit in a quarter of free RAM, else on disk."""
    import psutil

    if total_bytes <= psutil.virtual_memory().available // 4 or cache_dir is None:
        return ds.cache()
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return ds.cache(str(Path(cache_dir) / "decoded"))


# ---------------------------------------------------------------- one entry point


@dataclass
class SRData:
    """What training needs: a cached stream of whole training images and validation pairs."""

    train_images: tf.data.Dataset
    val_pairs: list[ImagePair]
    train_info: DatasetInfo
    val_info: DatasetInfo


def load_sr_data(
    dataset: str,
    scale: int,
    patch_size: int,
    val_dataset: str | None = None,
    cache_dir: str | Path | None = None,
) -> SRData:
    """Resolves ``dataset`` ("div2k", "sample" or a directory) into training and validation data."""
    if DIV2K in (dataset, val_dataset):
        builder = div2k_builder(scale, data_dir=os.environ.get("TFDS_DATA_DIR"))
    train, val = local_files(dataset, val_dataset)
    if train is None:
        # About 1 byte per pixel decoded: HR 2040x1356x3 plus LR, times 800 images.
        div2k_bytes = 800 * 2040 * 1356 * 3 * (1 + 1 / scale**2)
        train_images = cache_images(div2k_image_dataset(builder, "train"), div2k_bytes, cache_dir)
        train_info = div2k_info(builder, "train")
    else:
        train_pairs, train_info = load_pairs(train.paths, scale, patch_size, train.label)
        train_images = pairs_dataset(train_pairs).cache()
    if val is None:
        val_pairs, val_info = div2k_validation_pairs(builder), div2k_info(builder, "validation")
    else:
        val_pairs, val_info = load_pairs(val.paths, scale, 1, val.label, scored=True)
    return SRData(train_images, val_pairs, train_info, val_info)


# ---------------------------------------------------------------- evaluation sets

def load_eval_set(source: str, scale: int, root: str | Path | None = None) -> tuple[str, list[ImagePair]]:
    """Whole-image pairs of an evaluation set, and its short name (``set5``, ``div2k``...)."""
    name, location = resolve_eval_source(source, root)
    if location == DIV2K:
        return name, div2k_validation_pairs(div2k_builder(scale, data_dir=os.environ.get("TFDS_DATA_DIR")))
    pairs, _ = load_pairs(directory_image_paths(location), scale, 1, str(location), scored=True)
    return name, pairs
