"""What a model configuration may hold, and the checks of each value.

Plain Python, no TensorFlow: the command line imports this to list its choices and reject a
bad option at once, before the seconds TensorFlow takes to import. ``model`` builds one
upsampling stage per name in ``UPSAMPLER_NAMES`` (a test keeps the two in agreement).
"""

from __future__ import annotations

import math
import numbers

from .errors import ConfigError

UPSAMPLER_NAMES = ("subpixel", "transpose", "nearest", "bilinear")
SUPPORTED_SCALES = (2, 3, 4)
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def check_scale(scale: int) -> None:
    if scale not in SUPPORTED_SCALES:
        raise ConfigError(
            f"unsupported scale {scale!r}: use one of {', '.join(map(str, SUPPORTED_SCALES))}"
        )


def check_upsampler(upsampler: str) -> None:
    if upsampler not in UPSAMPLER_NAMES:
        raise ConfigError(f"unknown upsampler {upsampler!r}: use one of {', '.join(UPSAMPLER_NAMES)}")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")


def check_positive(name: str, value, kind=int) -> None:
    """Raises ConfigError unless ``value`` is a finite number > 0 (and whole, for ``kind=int``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    if kind is int and int(value) != value:
        raise ConfigError(f"{name} must be a whole number, got {value!r}")


# The transposed conv's kernel "as usually coded"; 2 x stride makes it equal to a 3x3 sub-pixel
# conv (Shi et al. 2016, "Is the deconvolution layer the same as a convolutional layer?").
DEFAULT_TRANSPOSE_KERNEL = 3


def check_upsampler_variant(upsampler: str, transpose_kernel: int, icnr: bool) -> None:
    """The controls that separate an upsampler's mechanism from its capacity apply to one
    upsampler each: ``transpose_kernel`` to ``transpose``, ``icnr`` to ``subpixel``."""
    check_positive("transpose_kernel", transpose_kernel)
    if transpose_kernel != DEFAULT_TRANSPOSE_KERNEL and upsampler != "transpose":
        raise ConfigError(f"transpose_kernel {transpose_kernel} applies to upsampler transpose only, not {upsampler!r}; "
                          f"leave it at {DEFAULT_TRANSPOSE_KERNEL}")
    if not isinstance(icnr, bool):
        raise ConfigError(f"icnr must be true or false, got {icnr!r}")
    if icnr and upsampler != "subpixel":
        raise ConfigError(f"icnr applies to upsampler subpixel only, not {upsampler!r}; leave it false")


def upsampler_variant(upsampler: str, transpose_kernel: int = DEFAULT_TRANSPOSE_KERNEL, icnr: bool = False) -> str:
    """The upsampler with its controls, as tables and run names show it: ``subpixel``,
    ``subpixel_icnr``, ``transpose`` (kernel 3), ``transpose_k6``, ``nearest``, ``bilinear``."""
    if upsampler == "transpose" and transpose_kernel != DEFAULT_TRANSPOSE_KERNEL:
        return f"transpose_k{transpose_kernel}"
    if upsampler == "subpixel" and icnr:
        return "subpixel_icnr"
    return upsampler


def run_name(scale: int, blocks: int, filters: int, upsampler: str,
             transpose_kernel: int = DEFAULT_TRANSPOSE_KERNEL, icnr: bool = False) -> str:
    """The name runs and models share, e.g. ``edsr_x4_b8_f64_transpose``, ``edsr_x4_b8_f32_transpose_k6``."""
    return f"edsr_x{scale}_b{blocks}_f{filters}_{upsampler_variant(upsampler, transpose_kernel, icnr)}"
