"""Which image files a ``dataset`` value names, how they split into training and validation,
and whether they can train: all without TensorFlow, so that ``train`` refuses a missing folder
or images too small for the patch in a second, before TensorFlow loads (``data`` builds the
tf.data pipelines from these files).
"""

from __future__ import annotations

import hashlib
import logging
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from . import images
from .errors import DataError
from .images import DatasetInfo, ImagePair, make_pair
from .metrics import SSIM_WINDOW
from .schema import DIV2K

log = logging.getLogger(__name__)

SAMPLE = "sample"
# Colour photographs bundled with scikit-image (public domain or CC0, see skimage.data).
SAMPLE_TRAIN_FILES = ("astronaut.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png")
SAMPLE_VAL_FILES = ("chelsea.png",)
HOLDOUT_EVERY = 10  # deterministic hold-out: every 10th image (sorted by name) validates


def scored_min_lr_size(scale: int) -> int:
    """The smallest LR side an image to be scored may have: SSIM's 11x11 window must fit in the
    HR image after ``scale`` pixels are shaved from each border (x2: 8, x3: 6, x4: 5)."""
    return -(-(SSIM_WINDOW + 2 * scale) // scale)


def smallest_lr_side(scale: int, min_lr_size: int, scored: bool) -> int:
    """The LR side an image needs: ``min_lr_size``, and for images to be scored also
    :func:`scored_min_lr_size`."""
    return max(min_lr_size, scored_min_lr_size(scale)) if scored else min_lr_size


def size_problem(path: Path, width: int, height: int, scale: int, min_lr_size: int) -> str | None:
    """Why an HR image of ``width`` x ``height`` cannot give ``min_lr_size`` px LR sides at
    ``scale``, or None if it can."""
    if min(height, width) // scale < min_lr_size:
        return f"{path}: {width}x{height} is too small for {min_lr_size}px LR patches at x{scale}"
    return None


def _no_usable_images(label: str, problems: list[str], min_lr_size: int, scale: int) -> DataError:
    detail = f" ({problems[0]}{' ...' if len(problems) > 1 else ''})" if problems else ""
    return DataError(f"no usable images in {label}{detail}; add PNG/JPEG/BMP images at least {min_lr_size * scale}px on each side")


def load_pairs(paths, scale: int, min_lr_size: int, label: str, *, scored: bool = False) -> tuple[list[ImagePair], DatasetInfo]:
    """Decodes image files into pairs; corrupt or too-small files are reported by name and skipped.

    Args:
        paths: image files.
        min_lr_size: smallest LR side accepted (the patch size for training).
        label: the source's name, for messages and the dataset record.
        scored: the images will be scored (validation, evaluation): also skip those too small
            for SSIM (:func:`scored_min_lr_size`) and flat ones (one colour: every upscaler
            reproduces them exactly, so their PSNR is infinite and says nothing).

    Raises:
        DataError: no usable image remains.
    """
    paths = [Path(p) for p in paths]
    min_lr_size = smallest_lr_side(scale, min_lr_size, scored)
    pairs, problems = [], []
    digest = hashlib.sha256()
    for path in paths:
        try:
            hr_image = images.load_rgb(path)
        except DataError as error:
            problems.append(str(error))
            continue
        height, width = hr_image.shape[:2]
        if problem := size_problem(path, width, height, scale, min_lr_size):
            problems.append(problem)
            continue
        if scored and int(hr_image.max()) == int(hr_image.min()):
            problems.append(f"{path}: one flat colour, so every upscaler scores infinite PSNR on it")
            continue
        pairs.append(make_pair(path.name, hr_image, scale))
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for problem in problems:
        log.warning("skipped %s", problem)
    if not pairs:
        raise _no_usable_images(label, problems, min_lr_size, scale)
    info = DatasetInfo(
        name=label,
        source=str(paths[0].parent.resolve()),
        digest=digest.hexdigest()[:16],
        num_images=len(pairs),
        image_names=tuple(p.name for p in pairs),
    )
    return pairs, info


def check_sizes(paths, scale: int, min_lr_size: int, label: str, *, scored: bool = False) -> None:
    """Raises the error :func:`load_pairs` (same arguments) would for a set in which no image is
    large enough, from the files' headers alone (nothing is decoded). A file that is corrupt past
    its header still shows when :func:`load_pairs` decodes it."""
    min_lr_size = smallest_lr_side(scale, min_lr_size, scored)
    problems = []
    for path in map(Path, paths):
        try:
            width, height = images.read_size(path)
        except DataError as error:
            problems.append(str(error))
            continue
        if (problem := size_problem(path, width, height, scale, min_lr_size)) is None:
            return
        problems.append(problem)
    raise _no_usable_images(label, problems, min_lr_size, scale)


def sample_image_paths(split: str) -> list[Path]:
    """The bundled sample photographs for ``split`` ("train" or "validation")."""
    files = SAMPLE_TRAIN_FILES if split == "train" else SAMPLE_VAL_FILES
    root = resources.files("skimage.data")
    return [Path(str(root / name)) for name in files]


def directory_image_paths(directory: str | Path) -> list[Path]:
    directory = Path(directory).expanduser()
    if directory.is_file():
        raise DataError(f"dataset {directory} is a file, not a folder; pass the folder that holds the HR images, 'sample' or 'div2k'")
    if not directory.is_dir():
        raise DataError(f"dataset directory {directory} does not exist; pass an existing folder of HR images, 'sample' or 'div2k'")
    paths = images.list_image_files(directory)
    if not paths:
        raise DataError(f"no PNG/JPEG/BMP images in {directory}; add HR images or pass 'sample'")
    return paths


def validation_paths(val_dataset: str) -> list[Path]:
    """The files of a separate validation source: the sample photograph or a folder."""
    return sample_image_paths("validation") if val_dataset == SAMPLE else directory_image_paths(val_dataset)


def split_paths(dataset: str, val_dataset: str | None) -> tuple[list[Path], list[Path], str, str]:
    """Training and validation files of a local source, and their labels.

    Without a separate ``val_dataset``, every ``HOLDOUT_EVERY``-th image of the sorted
    directory is held out for validation (at least one), the same for every run.
    """
    if dataset == SAMPLE:
        train, val, train_label, val_label = sample_image_paths("train"), sample_image_paths("validation"), "sample/train", "sample/validation"
    else:
        paths = directory_image_paths(dataset)
        train_label = val_label = str(Path(dataset).expanduser())
        if val_dataset:
            train, val = paths, []
        else:
            if len(paths) < 2:
                raise DataError(f"{dataset} holds one image: add more, or give a separate val_dataset")
            held = set(range(0, len(paths), HOLDOUT_EVERY))
            train = [p for i, p in enumerate(paths) if i not in held]
            val = [p for i, p in enumerate(paths) if i in held]
            train_label, val_label = f"{train_label} (train)", f"{val_label} (every {HOLDOUT_EVERY}th, held out)"
    if val_dataset:
        val = validation_paths(val_dataset)
        val_label = "sample/validation" if val_dataset == SAMPLE else str(Path(val_dataset).expanduser())
    return train, val, train_label, val_label


class Files(NamedTuple):
    """Local image files of one side of training (training or validation) and their label."""

    paths: list[Path]
    label: str


def local_files(dataset: str, val_dataset: str | None) -> tuple[Files | None, Files | None]:
    """The local files of training and of validation; None for a side that DIV2K provides
    (TensorFlow Datasets reads it, in ``data``)."""
    if dataset == DIV2K:
        val = None if val_dataset in (None, "", DIV2K) else Files(validation_paths(val_dataset), str(val_dataset))
        return None, val
    train, val, train_label, val_label = split_paths(dataset, None if val_dataset == DIV2K else val_dataset)
    return Files(train, train_label), None if val_dataset == DIV2K else Files(val, val_label)


def check_training_sources(dataset: str, val_dataset: str | None, scale: int, patch_size: int) -> None:
    """Refuses, from file listings and image headers (milliseconds), a training or validation
    source that ``data.load_sr_data`` would refuse after decoding it: a missing folder, a file
    for a folder, no images, one image and no validation source, no image large enough. DIV2K
    sources are left to ``data``: TensorFlow Datasets checks them."""
    train, val = local_files(dataset, val_dataset)
    if train:
        check_sizes(train.paths, scale, patch_size, train.label)
    if val:
        check_sizes(val.paths, scale, 1, val.label, scored=True)
