"""The logged model as a Python function: what ``mlflow.pyfunc.load_model`` and
``mlflow models serve`` run, and the one path from model output to image.

Every model this project logs ships this file and ``edsr_layers.py`` in its ``code/`` folder,
and its MLmodel names this module as the ``python_function`` loader. MLflow puts ``code/`` on
``sys.path``, imports the top-level module ``edsr_pyfunc`` and calls :func:`_load_pyfunc`,
which imports ``edsr_layers`` (registering the custom layers with Keras) and loads
``data/model.keras`` in Keras' safe mode. Neither file needs the ``edsr_mlflow`` package: a
logged model runs with numpy, Keras and TensorFlow alone.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import numpy as np

KERAS_FILE = "model.keras"  # in the keras flavour's data/ folder, where mlflow.keras saves it

# The pyfunc's settings, logged in the MLmodel as its model_config; override them at load
# (mlflow.pyfunc.load_model(uri, model_config={...})) or when serving (the environment variable
# MLFLOW_PYFUNC_INFERENCE_CONFIG='{"max_pixels": ...}').
DEFAULT_CONFIG = {
    "max_pixels": 4_000_000,  # LR pixels of one image (2000x2000): larger requests are refused
    "tile": 256,  # LR tile side: an image larger than tile x tile runs tile by tile, in bounded memory
}
TILE_OVERLAP = 16  # LR pixels of context on each side of a tile, discarded after


def to_uint8(image) -> np.ndarray:
    """Clip to 0..255, round half to even, cast: the only way model output becomes an image.

    PSNR is measured on exactly the image one would save, and a served model answers it.
    """
    return np.clip(np.rint(np.asarray(image, dtype=np.float32)), 0, 255).astype(np.uint8)


def tile_boxes(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(top, left, bottom, right) of each ``tile`` x ``tile`` LR tile, row by row."""
    return [(top, left, min(top + tile, height), min(left + tile, width))
            for top in range(0, height, tile) for left in range(0, width, tile)]


def upscale_tiled(forward: Callable[[np.ndarray], np.ndarray], lr_image: np.ndarray, tile: int, overlap: int = TILE_OVERLAP,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``lr_image`` (h, w, 3) upscaled tile by tile by ``forward`` (float32 (1, h, w, 3) -> SR),
    each tile with ``overlap`` LR pixels of context and made uint8 as it comes: memory is
    bounded by the tile and the uint8 output. ``progress``: called with (done, total) per tile."""
    height, width = lr_image.shape[:2]
    boxes = tile_boxes(height, width, tile)
    output = None
    for done, (top, left, bottom, right) in enumerate(boxes, 1):
        ctx_top, ctx_left = max(top - overlap, 0), max(left - overlap, 0)
        ctx_bottom, ctx_right = min(bottom + overlap, height), min(right + overlap, width)
        sr_tile = forward(np.asarray(lr_image[None, ctx_top:ctx_bottom, ctx_left:ctx_right], np.float32))[0]
        scale = sr_tile.shape[0] // (ctx_bottom - ctx_top)
        if output is None:
            output = np.empty((height * scale, width * scale, 3), np.uint8)
        output[top * scale : bottom * scale, left * scale : right * scale] = to_uint8(sr_tile[
            (top - ctx_top) * scale : (bottom - ctx_top) * scale,
            (left - ctx_left) * scale : (right - ctx_left) * scale,
        ])
        if progress is not None:
            progress(done, len(boxes))
    return output


def input_problem(lr_batch: np.ndarray, max_pixels: int) -> str:
    """Why ``lr_batch`` (as MLflow parsed the request) is no input for the model, or "": it must
    be (n, h, w, 3), every value a finite number in 0..255, and h x w at most ``max_pixels``."""
    if lr_batch.ndim != 4 or lr_batch.shape[-1] != 3:
        return f"expected images of shape (n, height, width, 3), got {lr_batch.shape}"
    if lr_batch.size == 0:
        return "the request holds no pixels"
    if not np.isfinite(lr_batch).all():
        return (f"{int(np.size(lr_batch) - np.isfinite(lr_batch).sum()):,} pixel values are not finite numbers "
                "(NaN, null, infinity, or beyond float32); send RGB values in 0..255")
    if lr_batch.min() < 0 or lr_batch.max() > 255:
        return f"pixel values must lie in 0..255, got {lr_batch.min():g} to {lr_batch.max():g}"
    height, width = lr_batch.shape[1:3]
    if height * width > max_pixels:
        return (f"an image of {width}x{height} = {height * width:,} pixels is over this model's limit of {max_pixels:,}; "
                "send a smaller image, or raise max_pixels in the model_config")
    return ""


class SuperResolver:
    """A loaded EDSR as MLflow's pyfunc calls it, with its settings (:data:`DEFAULT_CONFIG`)."""

    def __init__(self, model, config: dict | None = None):
        self.model = model
        self.config = {**DEFAULT_CONFIG, **(config or {})}

    def get_raw_model(self):
        """The Keras model (MLflow's ``PyFuncModel.get_raw_model``)."""
        return self.model

    def predict(self, lr_batch, params=None):
        """float32 (n, h, w, 3) RGB in 0..255 -> uint8 (n, h*scale, w*scale, 3): the images
        ``edsr-mlflow upscale`` would save. Refuses (MLflow: HTTP 400) what is no such input or
        is over ``max_pixels``; runs an image larger than ``tile`` x ``tile`` tile by tile.
        ``params`` is unused (MLflow passes it)."""
        lr_batch = np.asarray(lr_batch, np.float32)
        if problem := input_problem(lr_batch, int(self.config["max_pixels"])):
            from mlflow.exceptions import MlflowException

            raise MlflowException.invalid_parameter_value(problem)
        tile = int(self.config["tile"])
        height, width = lr_batch.shape[1:3]
        if height * width > tile * tile:
            return np.stack([upscale_tiled(self._forward, image, tile) for image in lr_batch])
        per_call = max(1, tile * tile // (height * width))  # images per model call: tile x tile pixels at most
        return np.concatenate([to_uint8(self._forward(lr_batch[i : i + per_call])) for i in range(0, len(lr_batch), per_call)])

    def _forward(self, lr_batch: np.ndarray) -> np.ndarray:
        import keras

        return keras.ops.convert_to_numpy(self.model(lr_batch, training=False))


def _load_pyfunc(data_path: str, model_config: dict | None = None) -> SuperResolver:
    """MLflow's loader hook; ``data_path`` is the model's ``data/`` folder, ``model_config`` the
    MLmodel's settings with the caller's overrides (models logged before it have none)."""
    import keras

    # Registers the layers: the copy beside this file in the model's code/ folder, or the
    # package's own when this module is imported as edsr_mlflow.edsr_pyfunc.
    importlib.import_module(f"{__package__}.edsr_layers" if __package__ else "edsr_layers")
    return SuperResolver(keras.saving.load_model(Path(data_path) / KERAS_FILE, safe_mode=True), model_config)
