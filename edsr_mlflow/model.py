"""EDSR (Lim et al. 2017, "Enhanced Deep Residual Networks for Single Image Super-Resolution").

The single-scale network: a 3x3 head conv, ``blocks`` residual blocks without batch
normalisation (BN removes the range flexibility SR needs and costs memory), a conv closing
the body, a global skip from head to body end, an upsampling stage and a 3x3 conv to RGB.

Inputs and outputs are RGB in 0..255 (float). The model subtracts the DIV2K mean and divides
by 127.5 on the way in and undoes it on the way out, with small serialisable layers, so a
saved ``.keras`` file loads back in Keras' safe mode.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from .config import check_policy, check_positive, check_scale, check_upsampler, check_upsampler_variant
from .edsr_layers import ICNR, BilinearUpsampling, NormalizeRGB, PixelShuffle, Scale
from .schema import DEFAULT_TRANSPOSE_KERNEL, run_name


def _conv(filters: int, name: str, dtype, kernel_size: int = 3, kernel_initializer="glorot_uniform") -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters, kernel_size, padding="same", name=name, dtype=dtype, kernel_initializer=kernel_initializer
    )


def _subpixel_stage(x, filters: int, factor: int, name: str, dtype, *, icnr: bool = False, **_):
    initializer = ICNR(factor) if icnr else "glorot_uniform"
    x = _conv(filters * factor * factor, f"{name}_conv", dtype, kernel_initializer=initializer)(x)
    return PixelShuffle(factor, name=f"{name}_shuffle", dtype=dtype)(x)


def _transpose_stage(x, filters: int, factor: int, name: str, dtype, *, transpose_kernel: int = DEFAULT_TRANSPOSE_KERNEL, **_):
    return keras.layers.Conv2DTranspose(
        filters, transpose_kernel, strides=factor, padding="same", name=f"{name}_transpose", dtype=dtype
    )(x)


def _resize_then_conv(interpolation: str):
    def stage(x, filters: int, factor: int, name: str, dtype, **_):
        if interpolation == "bilinear":
            x = BilinearUpsampling(factor, name=f"{name}_bilinear", dtype=dtype)(x)
        else:
            x = keras.layers.UpSampling2D(factor, interpolation=interpolation, name=f"{name}_{interpolation}", dtype=dtype)(x)
        return _conv(filters, f"{name}_conv", dtype)(x)

    return stage


# One upsampling stage per entry: (tensor, filters, factor, name, dtype, **controls) -> tensor;
# each stage reads the controls that apply to it (``icnr``, ``transpose_kernel``).
UPSAMPLERS: dict[str, Callable] = {
    "subpixel": _subpixel_stage,
    "transpose": _transpose_stage,
    "nearest": _resize_then_conv("nearest"),
    "bilinear": _resize_then_conv("bilinear"),
}


def upsampling_factors(scale: int) -> tuple[int, ...]:
    """x4 is two x2 stages; x2 and x3 are one stage."""
    check_scale(scale)
    return (2, 2) if scale == 4 else (scale,)


def residual_block(x, filters: int, res_scale: float, name: str, dtype):
    """conv3x3 - ReLU - conv3x3, scaled by ``res_scale``, added to the input. No batch norm.

    The second conv starts at zero, so every block starts as the identity and the body as a
    plain skip (as in SkipInit/Fixup): without batch norm, this is what lets a deep body train
    fast at a high learning rate (what it gains: README, "train parameters").
    """
    y = _conv(filters, f"{name}_conv1", dtype)(x)
    y = keras.layers.ReLU(name=f"{name}_relu", dtype=dtype)(y)
    y = _conv(filters, f"{name}_conv2", dtype, kernel_initializer="zeros")(y)
    if res_scale != 1.0:
        y = Scale(res_scale, name=f"{name}_scale", dtype=dtype)(y)
    return keras.layers.Add(name=f"{name}_add", dtype=dtype)([x, y])


def build_edsr(
    scale: int = 2,
    blocks: int = 16,
    filters: int = 64,
    res_scale: float = 1.0,
    upsampler: str = "subpixel",
    precision: str = "float32",
    transpose_kernel: int = DEFAULT_TRANSPOSE_KERNEL,
    icnr: bool = False,
) -> keras.Model:
    """The EDSR network for one upscaling factor.

    Args:
        scale: upscaling factor, 2, 3 or 4.
        blocks: number of residual blocks (>= 1); the paper's baseline has 16, EDSR 32.
        filters: feature channels (>= 1); baseline 64, EDSR 256.
        res_scale: residual scaling (> 0); 1.0 in the baseline, 0.1 in the wide EDSR.
        upsampler: ``subpixel``, ``transpose``, ``nearest`` or ``bilinear``.
        precision: Keras dtype policy of the body. The last conv and the de-normalisation
            always run in float32, so the output keeps full precision.
        transpose_kernel: kernel side of the ``transpose`` upsampler: 3 as usually coded (an
            uneven overlap at stride 2, Odena et al.'s checkerboard case), 6 at x2 to equal a
            3x3 sub-pixel conv in weights and receptive field.
        icnr: initialise the ``subpixel`` conv with ICNR (checkerboard-free at the start).

    Returns:
        A model mapping (batch, H, W, 3) RGB in 0..255 to (batch, H*scale, W*scale, 3).
    """
    check_scale(scale)
    check_upsampler(upsampler)
    check_upsampler_variant(upsampler, transpose_kernel, icnr)
    check_policy(precision)
    check_positive("blocks", blocks)
    check_positive("filters", filters)
    check_positive("res_scale", res_scale, kind=float)

    dtype = keras.DTypePolicy(precision)
    lr_image = keras.Input(shape=(None, None, 3), name="lr_image")
    x = NormalizeRGB(name="normalize", dtype=dtype)(lr_image)
    head = _conv(filters, "head_conv", dtype)(x)
    x = head
    for i in range(1, blocks + 1):
        x = residual_block(x, filters, res_scale, f"res_block_{i}", dtype)
    x = _conv(filters, "body_conv", dtype)(x)
    x = keras.layers.Add(name="global_skip", dtype=dtype)([head, x])
    stage = UPSAMPLERS[upsampler]
    for i, factor in enumerate(upsampling_factors(scale), start=1):
        x = stage(x, filters, factor, f"upsample_{i}", dtype, transpose_kernel=transpose_kernel, icnr=icnr)
    x = _conv(3, "tail_conv", "float32")(x)
    sr_image = NormalizeRGB(inverse=True, name="denormalize", dtype="float32")(x)
    return keras.Model(lr_image, sr_image, name=run_name(scale, blocks, filters, upsampler, transpose_kernel, icnr))


def macs_per_lr_pixel(model: keras.Model, probe_size: int = 8) -> int:
    """Multiply-accumulates of all convolutions per low-resolution input pixel.

    Measured by running the model once on a ``probe_size`` square input and reading each
    convolution's output size, so it follows whatever the builder made.
    """
    convs = [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))
    ]
    probe = keras.Model(model.input, [layer.output for layer in convs])
    outputs = probe(np.zeros((1, probe_size, probe_size, 3), np.float32))
    total = 0
    for layer, out in zip(convs, outputs):
        kh, kw, *_ = layer.kernel.shape
        _, h, w, _ = out.shape
        if isinstance(layer, keras.layers.Conv2DTranspose):
            # Each input pixel is scattered through the whole kernel.
            sh, sw = layer.strides
            kernel_shape = layer.kernel.shape  # (kh, kw, out, in)
            total += (h // sh) * (w // sw) * kh * kw * kernel_shape[2] * kernel_shape[3]
        else:
            total += h * w * kh * kw * layer.kernel.shape[2] * layer.kernel.shape[3]
    return int(total // (probe_size * probe_size))


def upscaling_factor(model: keras.Model, probe_size: int = 8) -> int:
    """The upscaling factor of ``model``, from one run on a ``probe_size`` square input."""
    return int(model(np.zeros((1, probe_size, probe_size, 3), np.float32)).shape[1]) // probe_size


def feature_bytes_per_lr_pixel(model: keras.Model, probe_size: int = 8, live: int = 3) -> float:
    """float32 bytes per LR input pixel of the model's ``live`` largest feature maps (a layer's
    input and output, and a skip held meanwhile): its working set grows with the pixels it sees
    at once by this much (``memory.upscale_bytes``). Measured by running the model once on a
    ``probe_size`` square input, so it follows whatever the builder made (the upsampler's
    feature maps at HR count ``scale`` squared times)."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.input, [layer.output for layer in layers])
    outputs = probe(np.zeros((1, probe_size, probe_size, 3), np.float32))
    per_pixel = sorted((float(np.prod(out.shape[1:])) / probe_size**2 for out in outputs), reverse=True)
    return 4.0 * sum(per_pixel[:live])
