"""Where in frequency an upscaler's error lies: measures beyond PSNR. Pure numpy.

Both work on the Y-channel error ``SR - HR`` after shaving, like the PSNR of :mod:`metrics`:

- :func:`periodic_error_index`: the checkerboard measure. An upsampler that treats the ``scale``
  output positions of each LR pixel differently (uneven overlap of a transposed conv, sub-pixel
  channels that disagree) leaves error that repeats every ``scale`` pixels, i.e. power at
  multiples of ``1/scale`` cycles per pixel. The index is the mean error power at those
  frequencies over the mean power of their neighbouring frequencies: about 1 for error without
  such a period, far above 1 with it.
- :func:`band_psnr`: the PSNR of the error below and above the LR Nyquist frequency
  (``0.5 / scale`` cycles per HR pixel): does an upscaler win on low-frequency fidelity (what
  the LR image holds) or on restored detail (what it does not)? The two MSEs add up to the MSE
  of plain PSNR (Parseval).
"""

from __future__ import annotations

import math

import numpy as np

from .metrics import rgb_to_y

NEIGHBOURHOOD = 3  # frequency bins on each side of a peak that form its background


def y_error(hr_image: np.ndarray, sr_image: np.ndarray, shave: int) -> np.ndarray:
    """SR minus HR on the Y channel (0..255 scale), ``shave`` pixels cut from every border."""
    if np.shape(hr_image) != np.shape(sr_image):
        raise ValueError(f"image shapes differ: HR {np.shape(hr_image)} vs SR {np.shape(sr_image)}")
    error = rgb_to_y(sr_image) - rgb_to_y(hr_image)
    return error[shave:-shave, shave:-shave] if shave else error


def periodic_error_index(hr_image: np.ndarray, sr_image: np.ndarray, *, scale: int, shave: int) -> float:
    """Mean error power at the frequencies ``(i/scale, j/scale)`` (not both 0) over the mean power
    of the bins within ``NEIGHBOURHOOD`` of them; NaN if the error is zero."""
    error = y_error(hr_image, sr_image, shave)
    height, width = error.shape
    # Whole periods only, so the peaks fall exactly on frequency bins.
    error = error[: height - height % scale, : width - width % scale]
    power = np.abs(np.fft.fft2(error - error.mean())) ** 2
    height, width = power.shape
    peaks, backgrounds = [], []
    for i in range(scale):
        for j in range(scale):
            if i == 0 and j == 0:
                continue
            row, col = i * height // scale, j * width // scale
            rows = np.arange(row - NEIGHBOURHOOD, row + NEIGHBOURHOOD + 1) % height
            cols = np.arange(col - NEIGHBOURHOOD, col + NEIGHBOURHOOD + 1) % width
            window = power[np.ix_(rows, cols)]
            peaks.append(power[row, col])
            backgrounds.append((window.sum() - power[row, col]) / (window.size - 1))
    background = float(np.mean(backgrounds))
    return float(np.mean(peaks)) / background if background > 0 else math.nan


def band_psnr(hr_image: np.ndarray, sr_image: np.ndarray, *, scale: int, shave: int) -> tuple[float, float]:
    """(PSNR of the error below the LR Nyquist frequency, PSNR of the error above it), in dB
    with peak 255; ``inf`` for a band without error."""
    error = y_error(hr_image, sr_image, shave)
    spectrum = np.fft.fft2(error)
    fy = np.abs(np.fft.fftfreq(error.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(error.shape[1]))[None, :]
    low = (fy <= 0.5 / scale) & (fx <= 0.5 / scale)
    mse_low = float(np.sum(np.abs(spectrum[low]) ** 2)) / error.size**2
    mse_high = float(np.sum(np.abs(spectrum[~low]) ** 2)) / error.size**2
    return _psnr_from_mse(mse_low), _psnr_from_mse(mse_high)


def _psnr_from_mse(mse: float) -> float:
    return math.inf if mse <= 1e-20 else 10.0 * math.log10(255.0**2 / mse)
