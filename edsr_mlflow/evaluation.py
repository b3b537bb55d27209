"""Scoring upscalers on whole-image pairs, always with the bicubic baseline beside them."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .data import ImagePair
from .inference import Upscaler, bicubic_upscaler
from .metrics import ImageScore, mean_scores, score_image


@dataclass(frozen=True)
class SetScores:
    """Scores of one upscaler on one set of images (averaged over images, not batches)."""

    per_image: tuple[ImageScore, ...]
    bicubic_per_image: tuple[ImageScore, ...]
    seconds_per_megapixel: float  # wall time of upscaling per million SR output pixels

    @property
    def psnr(self) -> float:
        return mean_scores(self.per_image)["psnr"]

    @property
    def ssim(self) -> float:
        return mean_scores(self.per_image)["ssim"]

    @property
    def psnr_rgb(self) -> float:
        return mean_scores(self.per_image)["psnr_rgb"]

    @property
    def bicubic_psnr(self) -> float:
        return mean_scores(self.bicubic_per_image)["psnr"]

    @property
    def bicubic_ssim(self) -> float:
        return mean_scores(self.bicubic_per_image)["ssim"]

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
            }
        )


def score_upscaler(upscale: Upscaler, pairs: list[ImagePair], scale: int) -> tuple[ImageScore, ...]:
    """Y-PSNR, Y-SSIM and RGB-PSNR of every image, shave = scale."""
    return tuple(score_image(p.name, p.hr_image, upscale(p.lr_image), shave=scale) for p in pairs)


def score_set(upscale: Upscaler, pairs: list[ImagePair], scale: int, bicubic: tuple[ImageScore, ...] | None = None) -> SetScores:
    """Scores ``upscale`` and the bicubic baseline (pass ``bicubic`` to reuse earlier scores)."""
    start = time.perf_counter()
    sr_images = [upscale(p.lr_image) for p in pairs]
    elapsed = time.perf_counter() - start
    megapixels = sum(sr.shape[0] * sr.shape[1] for sr in sr_images) / 1e6
    per_image = tuple(score_image(p.name, p.hr_image, sr, shave=scale) for p, sr in zip(pairs, sr_images))
    if bicubic is None:
        bicubic = score_upscaler(bicubic_upscaler(scale), pairs, scale)
    return SetScores(per_image, bicubic, elapsed / megapixels if megapixels else float("nan"))


def bicubic_set(pairs: list[ImagePair], scale: int) -> SetScores:
    return score_set(bicubic_upscaler(scale), pairs, scale)

