"""Scoring upscalers on whole-image pairs, always with the bicubic baseline beside them."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from .images import ImagePair, Upscaler, bicubic_upscaler
from .metrics import Y_PROTOCOL, ImageScore, Protocol, mean_scores, score_image
from .spectral import band_psnr, periodic_error_index


@dataclass(frozen=True)
class ErrorSpectrum:
    """Where one image's error lies (see :mod:`spectral`): the periodic-error (checkerboard)
    index, and the PSNR (dB) of the error below and above the LR Nyquist frequency."""

    periodic_index: float
    psnr_low: float
    psnr_high: float


def error_spectrum(hr_image, sr_image, scale: int) -> ErrorSpectrum:
    low, high = band_psnr(hr_image, sr_image, scale=scale, shave=scale)
    return ErrorSpectrum(periodic_error_index(hr_image, sr_image, scale=scale, shave=scale), low, high)


@dataclass(frozen=True)
class SetScores:
    """Scores of one upscaler on one set of images (averaged over images, not batches)."""

    per_image: tuple[ImageScore, ...]
    bicubic_per_image: tuple[ImageScore, ...]
    seconds_per_megapixel: float  # wall time of upscaling per million SR output pixels
    spectra: tuple[ErrorSpectrum, ...] = ()  # per image, as ``per_image``
    bicubic_spectra: tuple[ErrorSpectrum, ...] = ()

    def spectrum_means(self, bicubic: bool = False) -> dict[str, float]:
        """Means over images: ``periodic_index``, ``psnr_low``, ``psnr_high`` (NaN without spectra)."""
        spectra = self.bicubic_spectra if bicubic else self.spectra
        names = ("periodic_index", "psnr_low", "psnr_high")
        return {n: float(np.mean([getattr(s, n) for s in spectra])) if spectra else float("nan") for n in names}

    @functools.cached_property
    def means(self) -> dict[str, float]:
        """``psnr``, ``ssim``, ``psnr_rgb`` averaged over the images (computed once)."""
        return mean_scores(self.per_image)

    @functools.cached_property
    def bicubic_means(self) -> dict[str, float]:
        return mean_scores(self.bicubic_per_image)

    @property
    def psnr(self) -> float:
        return self.means["psnr"]

    @property
    def ssim(self) -> float:
        return self.means["ssim"]

    @property
    def psnr_rgb(self) -> float:
        return self.means["psnr_rgb"]

    @property
    def bicubic_psnr(self) -> float:
        return self.bicubic_means["psnr"]

    @property
    def bicubic_ssim(self) -> float:
        return self.bicubic_means["ssim"]

    @property
    def gain(self) -> float:
        """Mean Y-PSNR of the model minus that of bicubic on the same images, in dB."""
        return self.psnr - self.bicubic_psnr

    def table(self):
        """Per-image values as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(
            {
                "image": [s.name for s in self.per_image],
                "psnr": [s.psnr for s in self.per_image],
                "ssim": [s.ssim for s in self.per_image],
                "psnr_rgb": [s.psnr_rgb for s in self.per_image],
                "bicubic_psnr": [s.psnr for s in self.bicubic_per_image],
                "bicubic_ssim": [s.ssim for s in self.bicubic_per_image],
                **({"periodic_index": [s.periodic_index for s in self.spectra],
                    "psnr_low": [s.psnr_low for s in self.spectra],
                    "psnr_high": [s.psnr_high for s in self.spectra],
                    "bicubic_periodic_index": [s.periodic_index for s in self.bicubic_spectra]} if self.spectra else {}),
            }
        )


def score_upscaler(upscale: Upscaler, pairs: list[ImagePair], scale: int,
                   protocol: Protocol = Y_PROTOCOL) -> tuple[ImageScore, ...]:
    """PSNR, SSIM (Y by default) and RGB-PSNR of every image, shave = scale (by default)."""
    return score_images(pairs, [upscale(p.lr_image) for p in pairs], scale, protocol)


def score_images(pairs: list[ImagePair], sr_images: list, scale: int, protocol: Protocol = Y_PROTOCOL) -> tuple[ImageScore, ...]:
    """The scores of SR images already made, one per pair, in ``protocol``."""
    shave = protocol.shave(scale)
    return tuple(score_image(p.name, p.hr_image, sr, shave=shave, channel=protocol.channel) for p, sr in zip(pairs, sr_images))


def score_set(upscale: Upscaler, pairs: list[ImagePair], scale: int, bicubic: tuple[ImageScore, ...] | None = None,
              *, spectra: bool = False, protocol: Protocol = Y_PROTOCOL) -> SetScores:
    """Scores ``upscale`` and the bicubic baseline (pass ``bicubic`` to reuse earlier scores,
    scored in the same ``protocol``); with ``spectra``, also where the error of each lies
    (:func:`error_spectrum`).

    The first image is upscaled once before the clock starts, so ``seconds_per_megapixel``
    excludes graph tracing and other first-call costs."""
    if pairs:
        upscale(pairs[0].lr_image)  # warm-up
    start = time.perf_counter()
    sr_images = [upscale(p.lr_image) for p in pairs]
    elapsed = time.perf_counter() - start
    megapixels = sum(sr.shape[0] * sr.shape[1] for sr in sr_images) / 1e6
    per_image = score_images(pairs, sr_images, scale, protocol)
    if bicubic is None:
        bicubic = score_upscaler(bicubic_upscaler(scale), pairs, scale, protocol)
    model_spectra = bicubic_spectra = ()
    if spectra:
        model_spectra = tuple(error_spectrum(p.hr_image, sr, scale) for p, sr in zip(pairs, sr_images))
        bicubic_up = bicubic_upscaler(scale)
        bicubic_spectra = tuple(error_spectrum(p.hr_image, bicubic_up(p.lr_image), scale) for p in pairs)
    return SetScores(per_image, bicubic, elapsed / megapixels if megapixels else float("nan"), model_spectra, bicubic_spectra)


def bicubic_set(pairs: list[ImagePair], scale: int) -> SetScores:
    return score_set(bicubic_upscaler(scale), pairs, scale)

