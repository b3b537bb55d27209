"""The error-spectrum measures on synthetic images whose error is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edsr_mlflow import metrics, spectral


def grey(height: int = 96, width: int = 128) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 110 + 40 * np.sin(xx / 13.0) * np.cos(yy / 17.0)
    return np.clip(base[..., None] + rng.normal(0, 3, (height, width, 3)), 0, 255)


def with_error(hr: np.ndarray, error: np.ndarray) -> np.ndarray:
    """``hr`` plus ``error`` (grey, the same on R, G, B, so Y moves by 219/255 of it)."""
    return hr + error[..., None]


@pytest.mark.parametrize("scale", [2, 4])
def test_a_period_of_scale_pixels_is_flagged_and_white_noise_is_not(scale):
    hr = grey()
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 2, hr.shape[:2])
    yy, xx = np.mgrid[0:hr.shape[0], 0:hr.shape[1]]
    checkerboard = 2.0 * ((yy % scale == 0) & (xx % scale == 0))  # one output position of every scale x scale block
    white = spectral.periodic_error_index(hr, with_error(hr, noise), scale=scale, shave=scale)
    periodic = spectral.periodic_error_index(hr, with_error(hr, noise + checkerboard), scale=scale, shave=scale)
    assert 0.5 < white < 2.0
    assert periodic > 20 * white


def test_a_period_other_than_the_scale_is_not_counted():
    hr = grey()
    yy, xx = np.mgrid[0:hr.shape[0], 0:hr.shape[1]]
    rng = np.random.default_rng(2)
    period_3 = 2.0 * (xx % 3 == 0) + rng.normal(0, 2, hr.shape[:2])
    assert spectral.periodic_error_index(hr, with_error(hr, period_3), scale=4, shave=4) < 2.0


def test_band_psnr_splits_the_error_at_the_lr_nyquist_frequency():
    hr = grey()
    xx = np.mgrid[0:hr.shape[0], 0:hr.shape[1]][1]
    slow = 3.0 * np.cos(2 * np.pi * xx / 32)  # 1/32 cycles/px: below x4's LR Nyquist (1/8)
    fast = 3.0 * np.cos(2 * np.pi * xx / 4)  # 1/4 cycles/px: above it
    low, high = spectral.band_psnr(hr, with_error(hr, slow), scale=4, shave=0)
    assert math.isfinite(low) and high > low + 100
    low, high = spectral.band_psnr(hr, with_error(hr, fast), scale=4, shave=0)
    assert math.isfinite(high) and low > high + 100


def test_band_mses_add_up_to_the_psnr_mse():
    hr = grey()
    sr = with_error(hr, np.random.default_rng(3).normal(0, 4, hr.shape[:2]))
    low, high = spectral.band_psnr(hr, sr, scale=4, shave=4)
    band_mses = 255**2 * (10 ** (-low / 10) + 10 ** (-high / 10))
    assert band_mses == pytest.approx(np.mean(spectral.y_error(hr, sr, 4) ** 2), rel=1e-9)
    assert 10 * math.log10(255**2 / band_mses) == pytest.approx(metrics.psnr(hr, sr, shave=4), abs=1e-9)
