"""Turning LR images into SR images: whole, tiled, self-ensembled, or by bicubic baseline.

Every path ends in :func:`edsr_pyfunc.to_uint8` and tiles by :func:`edsr_pyfunc.upscale_tiled`, as the logged
model's pyfunc does, so what is scored is what would be saved and what a served model answers.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from .edsr_pyfunc import TILE_OVERLAP, to_uint8, upscale_tiled
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


def model_upscaler(
    model: keras.Model, *, tile: int = 0, tile_overlap: int = TILE_OVERLAP, self_ensemble: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Upscaler:
    """An upscaler from a Keras model.

    Args:
        tile: LR tile side in pixels; 0 runs the whole image at once. Tiled, memory is bounded
            by the tile and a uint8 output image (each tile is made uint8 as it comes).
        tile_overlap: LR pixels of context added on each side of a tile and discarded after,
            so tile borders see the same neighbourhood as in whole-image inference.
        self_ensemble: average the 8 flips/rotations (EDSR+ "geometric self-ensemble"), of
            each tile when tiled.
        progress: called with (tiles done, tiles in all) after each tile.
    """
    forward = make_forward(model)
    if self_ensemble:
        forward = _self_ensembled(forward)

    def upscale(lr_image: np.ndarray) -> np.ndarray:
        if tile:
            return upscale_tiled(forward, lr_image, tile, tile_overlap, progress)
        return to_uint8(forward(lr_image[None].astype(np.float32))[0])

    return upscale


def _dihedral(image: np.ndarray, k: int, flip: bool) -> np.ndarray:
    image = np.rot90(image, k, axes=(0, 1))
    return image[:, ::-1] if flip else image


def _undo_dihedral(image: np.ndarray, k: int, flip: bool) -> np.ndarray:
    image = image[:, ::-1] if flip else image
    return np.rot90(image, -k, axes=(0, 1))


def _self_ensembled(forward: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``forward`` averaged over the 8 flips/rotations of its one image: (1, h, w, 3) -> SR."""

    def ensembled(lr_batch: np.ndarray) -> np.ndarray:
        lr_image = lr_batch[0]
        outputs = [
            _undo_dihedral(forward(np.ascontiguousarray(_dihedral(lr_image, k, flip))[None])[0], k, flip)
            for k in range(4)
            for flip in (False, True)
        ]
        return np.mean(outputs, axis=0)[None]

    return ensembled
