"""Turning LR images into SR images: whole, tiled, self-ensembled, or by bicubic baseline.

Every path ends in :func:`edsr_pyfunc.to_uint8` (as the logged model's pyfunc does), so what is scored is what would be saved.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from .edsr_pyfunc import to_uint8
from .images import Upscaler


def make_forward(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """A compiled forward pass for any image size: float32 (n, h, w, 3) -> float32 SR.

    One trace serves every size (an explicit ``None`` signature), so validating on images of
    different sizes does not retrace.
    """

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def forward(lr_batch):
        return tf.cast(model(lr_batch, training=False), tf.float32)

    return lambda lr_batch: forward(tf.convert_to_tensor(lr_batch, tf.float32)).numpy()


def model_upscaler(model: keras.Model, *, tile: int = 0, tile_overlap: int = 16, self_ensemble: bool = False) -> Upscaler:
    """An upscaler from a Keras model.

    Args:
        tile: LR tile side in pixels; 0 runs the whole image at once.
        tile_overlap: LR pixels of context added on each side of a tile and discarded after,
            so tile borders see the same neighbourhood as in whole-image inference.
        self_ensemble: average the 8 flips/rotations (EDSR+ "geometric self-ensemble").
    """
    forward = make_forward(model)

    def upscale_float(lr_image: np.ndarray) -> np.ndarray:
        if tile:
            return _tiled(forward, lr_image, tile, tile_overlap)
        return forward(lr_image[None].astype(np.float32))[0]

    def upscale(lr_image: np.ndarray) -> np.ndarray:
        if self_ensemble:
            return to_uint8(_self_ensemble(upscale_float, lr_image))
        return to_uint8(upscale_float(lr_image))

    return upscale


def _dihedral(image: np.ndarray, k: int, flip: bool) -> np.ndarray:
    image = np.rot90(image, k, axes=(0, 1))
    return image[:, ::-1] if flip else image


def _undo_dihedral(image: np.ndarray, k: int, flip: bool) -> np.ndarray:
    image = image[:, ::-1] if flip else image
    return np.rot90(image, -k, axes=(0, 1))


def _self_ensemble(upscale_float: Callable, lr_image: np.ndarray) -> np.ndarray:
    outputs = [
        _undo_dihedral(upscale_float(np.ascontiguousarray(_dihedral(lr_image, k, flip))), k, flip)
        for k in range(4)
        for flip in (False, True)
    ]
    return np.mean(outputs, axis=0)


def _tiled(forward: Callable, lr_image: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    """Upscales tile by tile with ``overlap`` LR pixels of context; memory is bounded by the tile."""
    height, width = lr_image.shape[:2]
    lr_float = lr_image.astype(np.float32)
    scale = None
    output = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            ctx_top, ctx_left = max(top - overlap, 0), max(left - overlap, 0)
            ctx_bottom, ctx_right = min(bottom + overlap, height), min(right + overlap, width)
            sr_tile = forward(lr_float[None, ctx_top:ctx_bottom, ctx_left:ctx_right])[0]
            if output is None:
                scale = sr_tile.shape[0] // (ctx_bottom - ctx_top)
                output = np.empty((height * scale, width * scale, 3), np.float32)
            output[top * scale : bottom * scale, left * scale : right * scale] = sr_tile[
                (top - ctx_top) * scale : (bottom - ctx_top) * scale,
                (left - ctx_left) * scale : (right - ctx_left) * scale,
            ]
    return output
