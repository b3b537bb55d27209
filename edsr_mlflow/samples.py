"""Side-by-side crops for eyes: LR (pixel-replicated) | bicubic | SR | HR, from the centre of an
image (the samples a training run logs) or from its most textured window (``edsr-mlflow crops``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .images import ImagePair, Upscaler, bicubic_upscaler

LABEL_HEIGHT = 14
# BT.601 luma weights in thousandths: texture is measured in integers, so equal windows tie exactly.
LUMA_WEIGHTS = np.array([299, 587, 114], dtype=np.int64)
CONTEXT_LR = 16  # LR pixels of image around a crop when it is upscaled (as tiled inference has)

Box = tuple[int, int, int, int]  # (top, left, bottom, right) in pixels


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a centred square of side ``size`` (or less, if the image is smaller)."""
    size = min(size, height, width)
    top, left = (height - size) // 2, (width - size) // 2
    return top, left, top + size, left + size


def textured_crop_box(image: np.ndarray, size: int) -> Box:
    """(top, left, bottom, right) of the square of side ``size`` with the most texture in
    ``image`` (H, W, 3): the highest mean gradient magnitude of its luma, |dx| + |dy| between
    neighbouring pixels both inside the window. Flat areas score 0, fine stripes and cloth the
    most. Window sums come from integral images (one pass, whatever ``size``) in integers, so the
    choice is exact and deterministic: of equal windows, the top-most, then left-most.

    Raises:
        ValueError: ``size`` is below 1 or larger than the image's height or width.
    """
    height, width = image.shape[:2]
    if not 1 <= size <= min(height, width):
        raise ValueError(f"crop side {size} does not fit a {width}x{height} image")
    luma = image[..., :3].astype(np.int64) @ LUMA_WEIGHTS
    rows, cols = height - size + 1, width - size + 1  # window positions
    texture = (_window_sums(np.abs(np.diff(luma, axis=1)), size, size - 1, rows, cols)
               + _window_sums(np.abs(np.diff(luma, axis=0)), size - 1, size, rows, cols))
    top, left = np.unravel_index(np.argmax(texture), texture.shape)  # argmax: the first maximum, row-major
    return int(top), int(left), int(top) + size, int(left) + size


def _window_sums(values: np.ndarray, height: int, width: int, rows: int, cols: int) -> np.ndarray:
    """Sums of ``values`` over the (height x width) windows at the first ``rows`` x ``cols``
    top-left positions (a window may be empty: height or width 0)."""
    integral = np.pad(values.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    below, right = slice(height, height + rows), slice(width, width + cols)
    above, left = slice(0, rows), slice(0, cols)
    return integral[below, right] - integral[above, right] - integral[below, left] + integral[above, left]


def comparison_strip(pair: ImagePair, upscale: Upscaler, scale: int, crop_lr: int = 64) -> np.ndarray:
    """One labelled row of HR-sized panels cut from the centre of ``pair``, as uint8 RGB."""
    top, left, bottom, right = center_crop_box(*pair.lr_image.shape[:2], crop_lr)
    lr_crop = pair.lr_image[top:bottom, left:right]
    panels = {
        "LR": np.repeat(np.repeat(lr_crop, scale, axis=0), scale, axis=1),
        "bicubic": bicubic_upscaler(scale)(lr_crop),
        "SR": upscale(lr_crop),
        "HR": pair.hr_image[top * scale : bottom * scale, left * scale : right * scale],
    }
    return labelled_row(panels)


def labelled_row(panels: dict[str, np.ndarray], gap: int = 4) -> np.ndarray:
    """Panels of equal height side by side, each with its label above."""
    height = max(p.shape[0] for p in panels.values())
    width = sum(p.shape[1] for p in panels.values()) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (width, height + LABEL_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for label, panel in panels.items():
        canvas.paste(Image.fromarray(panel), (x, LABEL_HEIGHT))
        draw.text((x + 2, 1), label, fill=(0, 0, 0))
        x += panel.shape[1] + gap
    return np.asarray(canvas)


def visual_samples(pairs: list[ImagePair], upscale: Upscaler, scale: int, count: int = 3) -> list[tuple[str, np.ndarray]]:
    """Comparison strips of the first ``count`` images: [(image name, strip)]."""
    return [(pair.name, comparison_strip(pair, upscale, scale)) for pair in pairs[:count]]


@dataclass(frozen=True)
class CropWindow:
    """A window of a whole image pair: ``box`` (top, left, bottom, right) in LR pixels."""

    pair: ImagePair
    box: Box


def crop_rows(windows: list[CropWindow], upscalers: list[tuple[str, Upscaler]], scale: int, *, zoom: int = 1,
              context: int = CONTEXT_LR) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The rows of a crop grid as (title, {panel label: panel}): first a ``reference`` row, LR
    (pixel-replicated) | HR of each window, then one row per upscaler (its label as title),
    bicubic | SR of each window. Every panel is HR-sized, magnified ``zoom`` times by pixel
    replication. Both upscalers see ``context`` LR pixels around the window (where the image
    has them), so a crop's border looks as it does in the whole upscaled image."""
    reference, bicubic = {}, {}
    for window in windows:
        top, left, bottom, right = window.box
        name = window.pair.name
        reference[f"{name} LR"] = _magnified(window.pair.lr_image[top:bottom, left:right], scale * zoom)
        reference[f"{name} HR"] = _magnified(window.pair.hr_image[top * scale : bottom * scale, left * scale : right * scale], zoom)
        bicubic[name] = _magnified(_upscaled_window(bicubic_upscaler(scale), window, scale, context), zoom)
    rows = [("reference: LR input, pixel-replicated | HR ground truth", reference)]
    for label, upscale in upscalers:
        panels = {}
        for window in windows:
            name = window.pair.name
            panels[f"{name} bicubic"] = bicubic[name]
            panels[f"{name} SR"] = _magnified(_upscaled_window(upscale, window, scale, context), zoom)
        rows.append((label, panels))
    return rows


def _upscaled_window(upscale: Upscaler, window: CropWindow, scale: int, context: int) -> np.ndarray:
    """The HR-sized result of ``upscale`` on the window with up to ``context`` LR pixels around it,
    cut back to the window."""
    top, left, bottom, right = window.box
    height, width = window.pair.lr_image.shape[:2]
    outer_top, outer_left = max(0, top - context), max(0, left - context)
    outer_bottom, outer_right = min(height, bottom + context), min(width, right + context)
    upscaled = upscale(window.pair.lr_image[outer_top:outer_bottom, outer_left:outer_right])
    return upscaled[(top - outer_top) * scale : (bottom - outer_top) * scale, (left - outer_left) * scale : (right - outer_left) * scale]


def _magnified(image: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def titled_grid(rows: list[tuple[str, dict[str, np.ndarray]]], gap: int = 8) -> np.ndarray:
    """Rows stacked top to bottom, each its title on a line of its own over a
    :func:`labelled_row`; uint8 RGB on white."""
    drawn = [labelled_row(panels) for _, panels in rows]
    width = max(row.shape[1] for row in drawn)
    height = sum(LABEL_HEIGHT + row.shape[0] for row in drawn) + gap * (len(drawn) - 1)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = 0
    for (title, _), row in zip(rows, drawn):
        draw.text((2, y + 1), title, fill=(0, 0, 160))
        canvas.paste(Image.fromarray(row), (0, y + LABEL_HEIGHT))
        y += LABEL_HEIGHT + row.shape[0] + gap
    return np.asarray(canvas)


def crop_grid(windows: list[CropWindow], upscalers: list[tuple[str, Upscaler]], scale: int, *, zoom: int = 1) -> np.ndarray:
    """:func:`crop_rows` drawn by :func:`titled_grid`: the crops grid as one uint8 RGB image."""
    return titled_grid(crop_rows(windows, upscalers, scale, zoom=zoom))
