"""Reading images, MATLAB-like bicubic resizing and the (LR, HR) pairs it makes, and where the
benchmark sets lie (model output becomes uint8 by :func:`edsr_pyfunc.to_uint8`, which every
logged model ships). No TensorFlow: ``compare``'s side and ``crops`` use it before loading any.

All images here are numpy arrays of shape (H, W, 3), dtype uint8, RGB in 0..255.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
    """Decodes an image file to RGB uint8, upright as viewers show it (its EXIF orientation
    applied). Grayscale, palette and RGBA images become RGB.

    Raises:
        DataError: the file is missing, not an image, truncated, or holds several frames.
    """
    with _opened(Path(path)) as image:
        _check_single_frame(image, Path(path))
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Drop transparency by compositing on white, rather than exposing hidden colours.
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        elif image.mode.startswith("I;16") or image.mode == "I":
            # 16-bit grayscale: keep the top 8 bits.
            image = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8))
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


# EXIF orientations that turn the stored image by 90 or 270 degrees (transposed, rotated,
# transversed): its shown width is the stored height.
QUARTER_TURN_ORIENTATIONS = (5, 6, 7, 8)
EXIF_ORIENTATION = 0x0112


def read_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as :func:`load_rgb` returns the image (EXIF orientation applied), from
    the file's header, without decoding the pixels (milliseconds).

    Raises:
        DataError: as :func:`load_rgb`, for a missing file or one that is not an image.
    """
    with _opened(Path(path)) as image:
        width, height = image.size
        if image.getexif().get(EXIF_ORIENTATION) in QUARTER_TURN_ORIENTATIONS:
            return height, width
        return width, height


def _check_single_frame(image: Image.Image, path: Path) -> None:
    """Refuses an animation or a multi-page file: upscaling its first frame alone would drop the
    rest without a word. A phone's MPO JPEG (the photo, then previews) is one picture."""
    frames = getattr(image, "n_frames", 1)
    if frames > 1 and image.format != "MPO":
        raise DataError(f"{path}: holds {frames} frames ({image.format}); save the frame you want as a PNG "
                        "and pass that (e.g. with Pillow: Image.open(path).seek(i))")


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


def check_output_path(path: str | Path, input_path: str | Path | None = None, overwrite_input: bool = False) -> None:
    """Raises DataError unless an image can be written to ``path`` (checked before the work
    that produces the image): its suffix names a format, its folder exists and takes new files,
    its name is not too long for the file system, and it is not ``input_path`` (the same file by
    another name, a symbolic or a hard link, included) unless ``overwrite_input``."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"{path}: name the output with an image suffix ({', '.join(IMAGE_SUFFIXES)}), e.g. {path.with_suffix('.png')}")
    folder = path.parent
    if not folder.exists():
        raise DataError(f"{path}: folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise DataError(f"{path}: {folder} is a file, not a folder; choose another output path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(f"{path}: cannot write into {folder} (permission denied); choose a folder you may write to")
    if len(os.fsencode(path.name)) > os.pathconf(folder, "PC_NAME_MAX"):
        raise DataError(f"{path}: the file name is {len(os.fsencode(path.name))} bytes, more than this file system allows "
                        f"({os.pathconf(folder, 'PC_NAME_MAX')}); choose a shorter name")
    if input_path is not None and not overwrite_input and _same_file(path, Path(input_path)):
        raise DataError(f"{path}: that is the input image {input_path}, which would be replaced by its upscale; "
                        "name another output, or pass --overwrite-input")


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (by device and inode: links and other spellings too)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet)
        return False


def save_rgb(image: np.ndarray, path: str | Path) -> None:
    """Writes ``image`` to ``path`` whole or not at all: into a hidden file beside it, renamed
    over ``path`` once complete (a full disk or a kill leaves no half-written image).

    Raises:
        DataError: the image cannot be written (one line with the path and the reason).
    """
    path = Path(path)
    partial = path.with_name(f".edsr-mlflow-{os.getpid()}-{secrets.token_hex(4)}.partial")  # short: any name fits
    try:
        if path.suffix.lower() == ".png":
            with open(partial, "wb") as out:
                write_png_rows(image, out)
        else:
            Image.fromarray(image).save(partial, format=Image.registered_extensions()[path.suffix.lower()])
        os.replace(partial, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise DataError(f"{path}: cannot write the image ({error.strerror or error}); free space or choose another path") from None


def write_png_rows(image: np.ndarray, out: BinaryIO, rows_per_strip: int = 256) -> None:
    """Writes ``image`` (uint8 (h, w, 3)) to the binary file ``out`` as an 8-bit RGB PNG, a
    strip of rows at a time, each row "Up"-filtered (its difference from the row above): memory
    stays that of a strip, where Pillow first copies the whole image into a buffer of 4 bytes
    per pixel (1.3 GB more for a 324-megapixel upscale)."""
    height, width = image.shape[:2]

    def chunk(kind: bytes, data: bytes) -> None:
        out.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)))

    out.write(b"\x89PNG\r\n\x1a\n")
    chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))  # 8-bit RGB, no interlace
    compressor = zlib.compressobj(6)
    above = np.zeros((1, width * 3), np.uint8)
    for top in range(0, height, rows_per_strip):
        rows = image[top : top + rows_per_strip].reshape(-1, width * 3)
        filtered = np.empty((len(rows), width * 3 + 1), np.uint8)
        filtered[:, 0] = 2  # the Up filter
        filtered[:, 1:] = rows - np.concatenate([above, rows[:-1]])  # modulo 256, as PNG wants
        above = rows[-1:]
        if data := compressor.compress(filtered.tobytes()):
            chunk(b"IDAT", data)
    chunk(b"IDAT", compressor.flush())
    chunk(b"IEND", b"")


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
