"""Side-by-side crops for eyes: LR (pixel-replicated) | bicubic | SR | HR."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .images import ImagePair, Upscaler, bicubic_upscaler

LABEL_HEIGHT = 14


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a centred square of side ``size`` (or less, if the image is smaller)."""
    size = min(size, height, width)
    top, left = (height - size) // 2, (width - size) // 2
    return top, left, top + size, left + size


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
