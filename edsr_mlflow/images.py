"""Reading images, MATLAB-like bicubic resizing and the (LR, HR) pairs it makes, and where the
benchmark sets lie (model output becomes uint8 by :func:`edsr_pyfunc.to_uint8`, which every
logged model ships). No TensorFlow: ``compare``'s side and ``crops`` use it before loading any.

All images here are numpy arrays of shape (H, W, 3), dtype uint8, RGB in 0..255.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError
from .schema import BENCHMARK_FOLDERS, DIV2K, eval_set_name

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

# (h, w, 3) uint8 LR -> (h*s, w*s, 3) uint8 SR
Upscaler = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ImagePair:
    """A whole low/high-resolution image pair, uint8 RGB; HR is exactly ``scale`` x LR."""

    name: str
    lr_image: np.ndarray
    hr_image: np.ndarray


@dataclass(frozen=True)
class DatasetInfo:
    """What a run trained or validated on, for the tracking store."""

    name: str
    source: str
    digest: str
    num_images: int
    image_names: tuple[str, ...] = field(default=(), repr=False)


def bicubic_upscaler(scale: int) -> Upscaler:
    """The bicubic baseline as an upscaler."""
    return lambda lr_image: upscale_bicubic(lr_image, scale)


@contextlib.contextmanager
def _opened(path: Path):
    """The image file, opened; a missing, non-image or truncated file (found while opening or
    while reading it inside the block) raises DataError, one line with the fix."""
    try:
        with Image.open(path) as image:
            yield image
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot decode image ({error}); replace or remove the file") from None


def load_rgb(path: str | Path) -> np.ndarray:
    """Decodes an image file to RGB uint8. Grayscale, palette and RGBA images become RGB.

    Raises:
        DataError: the file is missing, not an image, or truncated.
    """
    with _opened(Path(path)) as image:
        image.load()
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Drop transparency by compositing on white, rather than exposing hidden colours.
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        elif image.mode.startswith("I;16") or image.mode == "I":
            # 16-bit grayscale: keep the top 8 bits.
            image = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8))
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels (milliseconds).

    Raises:
        DataError: as :func:`load_rgb`, for a missing file or one that is not an image.
    """
    with _opened(Path(path)) as image:
        return image.size


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    """Crops the bottom and right edges so height and width are multiples of ``scale``."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def resize_bicubic(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic resize with MATLAB ``imresize`` semantics, uint8 in and out.

    Pillow's bicubic uses MATLAB's kernel (a = -0.5), widens the kernel by the scale factor
    when shrinking (MATLAB's antialiasing) and rounds to uint8 like MATLAB does for uint8
    input. On Set5 this gives the published bicubic PSNRs to within 0.01 dB.
    """
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def downscale(hr_image: np.ndarray, scale: int) -> np.ndarray:
    """The standard bicubic degradation: HR (a multiple of ``scale``) -> LR."""
    height, width = hr_image.shape[:2]
    if height % scale or width % scale:
        raise ValueError(f"HR size {width}x{height} is not a multiple of scale {scale}")
    return resize_bicubic(hr_image, width // scale, height // scale)


def upscale_bicubic(lr_image: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upscaling: the baseline every SR model is compared with."""
    height, width = lr_image.shape[:2]
    return resize_bicubic(lr_image, width * scale, height * scale)


def make_pair(name: str, hr_image: np.ndarray, scale: int) -> ImagePair:
    """Crops HR to a multiple of ``scale`` and derives LR by MATLAB-like bicubic downscaling."""
    hr_image = crop_to_multiple(hr_image, scale)
    return ImagePair(name, downscale(hr_image, scale), hr_image)


def check_output_path(path: str | Path) -> None:
    """Raises DataError unless an image can be written to ``path``: its folder exists and its
    suffix names a format (checked before the work that produces the image)."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"{path}: name the output with an image suffix ({', '.join(IMAGE_SUFFIXES)}), e.g. {path.with_suffix('.png')}")
    if not path.parent.is_dir():
        raise DataError(f"{path}: folder {path.parent} does not exist; create it first")


def save_rgb(image: np.ndarray, path: str | Path) -> None:
    Image.fromarray(image).save(path)


def list_image_files(directory: str | Path) -> list[Path]:
    """Image files directly in ``directory``, sorted by name."""
    directory = Path(directory)
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# The folder that holds the benchmarks' HR images (schema.BENCHMARK_FOLDERS names them).
BENCHMARK_ROOT_ENV = "EDSR_BENCHMARK_ROOT"


def benchmark_root(root: str | Path | None) -> Path | None:
    """The benchmark root: the argument, else ``$EDSR_BENCHMARK_ROOT``, else none."""
    root = root or os.environ.get(BENCHMARK_ROOT_ENV)
    return Path(root).expanduser() if root else None


def resolve_eval_source(source: str, root: str | Path | None) -> tuple[str, str | Path]:
    """(short name for metric keys, what to load) for ``div2k``, a benchmark name or a folder."""
    key = source.strip().lower()
    if key == DIV2K:
        return DIV2K, DIV2K
    if key in BENCHMARK_FOLDERS:
        folder_root = benchmark_root(root)
        if folder_root is None:
            raise DataError(f"benchmark '{source}' needs a benchmark root: pass --benchmark-root or set {BENCHMARK_ROOT_ENV} to the folder holding {BENCHMARK_FOLDERS[key]}/")
        candidates = [p for p in folder_root.iterdir() if p.is_dir() and p.name.lower() == BENCHMARK_FOLDERS[key].lower()] if folder_root.is_dir() else []
        if not candidates:
            raise DataError(f"benchmark '{source}' not found: no {BENCHMARK_FOLDERS[key]}/ in {folder_root}; download its HR images there")
        return key, candidates[0]
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"unknown evaluation dataset '{source}': use div2k, one of {', '.join(BENCHMARK_FOLDERS)}, or an existing folder of HR images"
        )
    return eval_set_name(source), folder
