"""PSNR and SSIM in the protocol of the super-resolution literature.

The protocol (EDSR, RCAN, BasicSR ``test_y_channel=True``): score uint8 images, on the Y
channel of YCbCr (ITU-R BT.601 as in MATLAB ``rgb2ycbcr``, Y in 16..235), with ``shave``
pixels (usually the scale) removed from every border, one value per image, averaged over
the images of a set. Every convention is an explicit argument here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .schema import DEFAULT_PROTOCOL
from .schema import PAPER_RGB_PROTOCOL as PAPER_RGB_PROTOCOL_NAME

CHANNELS = ("y", "rgb")


@dataclass(frozen=True)
class Protocol:
    """How a set is scored: the channel of PSNR and SSIM, and the border shaved (scale + ``extra_shave``)."""

    name: str  # as it appears in metric keys, except the default's
    channel: str
    extra_shave: int = 0

    def shave(self, scale: int) -> int:
        return scale + self.extra_shave

    @property
    def description(self) -> str:
        shave = f"scale + {self.extra_shave}" if self.extra_shave else "scale"
        return f"PSNR and SSIM on {'the Y channel' if self.channel == 'y' else 'RGB'}, border shave = {shave}"


# The literature's benchmark protocol (Set5, Set14, B100...): Y channel, shave = scale.
Y_PROTOCOL = Protocol(DEFAULT_PROTOCOL, "y")
# The EDSR paper's DIV2K validation numbers (e.g. 28.94 dB for the x4 baseline): RGB, shave = scale + 6.
PAPER_RGB_PROTOCOL = Protocol(PAPER_RGB_PROTOCOL_NAME, "rgb", extra_shave=6)
PROTOCOLS = {p.name: p for p in (Y_PROTOCOL, PAPER_RGB_PROTOCOL)}


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Luma of an RGB image in 0..255, as MATLAB ``rgb2ycbcr``: float64, 16..235, not rounded."""
    rgb = np.asarray(image, dtype=np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def _prepare(hr_image: np.ndarray, sr_image: np.ndarray, shave: int, channel: str) -> tuple[np.ndarray, np.ndarray]:
    hr_image, sr_image = np.asarray(hr_image), np.asarray(sr_image)
    if hr_image.shape != sr_image.shape:
        raise ValueError(f"image shapes differ: HR {hr_image.shape} vs SR {sr_image.shape}")
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}")
    if shave < 0 or 2 * shave >= min(hr_image.shape[:2]):
        raise ValueError(f"shave {shave} leaves nothing of a {hr_image.shape[1]}x{hr_image.shape[0]} image")
    if channel == "y":
        hr, sr = rgb_to_y(hr_image), rgb_to_y(sr_image)
    else:
        hr, sr = hr_image.astype(np.float64), sr_image.astype(np.float64)
    if shave:
        hr, sr = hr[shave:-shave, shave:-shave], sr[shave:-shave, shave:-shave]
    return hr, sr


def psnr(hr_image: np.ndarray, sr_image: np.ndarray, *, shave: int, channel: str = "y") -> float:
    """Peak signal-to-noise ratio in dB for uint8 RGB images (peak 255).

    Args:
        hr_image, sr_image: (H, W, 3) uint8 RGB, same shape.
        shave: pixels removed from each border before scoring (the scale, by convention).
        channel: ``"y"`` (BT.601 luma, the literature's protocol) or ``"rgb"``.

    Returns:
        PSNR in dB; ``inf`` for identical images.
    """
    hr, sr = _prepare(hr_image, sr_image, shave, channel)
    mse = np.mean((hr - sr) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


SSIM_WINDOW = 11  # side of SSIM's Gaussian window, in pixels


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation with a 1-D window along both axes."""
    size = window.size
    rows = np.lib.stride_tricks.sliding_window_view(image, size, axis=0) @ window
    return np.lib.stride_tricks.sliding_window_view(rows, size, axis=1) @ window


def _ssim_single(hr: np.ndarray, sr: np.ndarray) -> float:
    """Wang et al. 2004 SSIM of one 2-D channel in 0..255: 11x11 Gaussian (sigma 1.5), valid region."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    window = _gaussian_window()
    mu_hr, mu_sr = _filter_valid(hr, window), _filter_valid(sr, window)
    var_hr = _filter_valid(hr * hr, window) - mu_hr**2
    var_sr = _filter_valid(sr * sr, window) - mu_sr**2
    cov = _filter_valid(hr * sr, window) - mu_hr * mu_sr
    ssim_map = ((2 * mu_hr * mu_sr + c1) * (2 * cov + c2)) / ((mu_hr**2 + mu_sr**2 + c1) * (var_hr + var_sr + c2))
    return float(ssim_map.mean())


def ssim(hr_image: np.ndarray, sr_image: np.ndarray, *, shave: int, channel: str = "y") -> float:
    """Structural similarity (0..1, 1 for identical images), as MATLAB ``ssim_index`` / BasicSR.

    Same arguments as :func:`psnr`. For ``"rgb"`` the three channels' SSIMs are averaged.
    """
    hr, sr = _prepare(hr_image, sr_image, shave, channel)
    if min(hr.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after shaving, got {hr.shape[1]}x{hr.shape[0]}")
    if channel == "y":
        return _ssim_single(hr, sr)
    return float(np.mean([_ssim_single(hr[..., c], sr[..., c]) for c in range(3)]))


@dataclass(frozen=True)
class ImageScore:
    """Scores of one image: PSNR (dB) and SSIM in the protocol's channel (Y by default), RGB-PSNR (dB)."""

    name: str
    psnr: float
    ssim: float
    psnr_rgb: float


def score_image(name: str, hr_image: np.ndarray, sr_image: np.ndarray, *, shave: int, channel: str = "y") -> ImageScore:
    return ImageScore(
        name=name,
        psnr=psnr(hr_image, sr_image, shave=shave, channel=channel),
        ssim=ssim(hr_image, sr_image, shave=shave, channel=channel),
        psnr_rgb=psnr(hr_image, sr_image, shave=shave, channel="rgb"),
    )


def mean_scores(scores: Iterable[ImageScore]) -> dict[str, float]:
    """Per-image values averaged over images: ``{"psnr", "ssim", "psnr_rgb"}``."""
    scores = list(scores)
    if not scores:
        raise ValueError("no images were scored")
    return {
        "psnr": float(np.mean([s.psnr for s in scores])),
        "ssim": float(np.mean([s.ssim for s in scores])),
        "psnr_rgb": float(np.mean([s.psnr_rgb for s in scores])),
    }
