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

import numpy as np

KERAS_FILE = "model.keras"  # in the keras flavour's data/ folder, where mlflow.keras saves it


def to_uint8(image) -> np.ndarray:
    """Clip to 0..255, round half to even, cast: the only way model output becomes an image.

    PSNR is measured on exactly the image one would save, and a served model answers it.
    """
    return np.clip(np.rint(np.asarray(image, dtype=np.float32)), 0, 255).astype(np.uint8)


class SuperResolver:
    """A loaded EDSR as MLflow's pyfunc calls it."""

    def __init__(self, model):
        self.model = model

    def get_raw_model(self):
        """The Keras model (MLflow's ``PyFuncModel.get_raw_model``)."""
        return self.model

    def predict(self, lr_batch, params=None):
        """float32 (n, h, w, 3) RGB in 0..255 -> uint8 (n, h*scale, w*scale, 3): the images
        ``edsr-mlflow upscale`` would save. ``params`` is unused (MLflow passes it)."""
        import keras

        sr_batch = self.model(np.asarray(lr_batch, np.float32), training=False)
        return to_uint8(keras.ops.convert_to_numpy(sr_batch))


def _load_pyfunc(data_path: str) -> SuperResolver:
    """MLflow's loader hook; ``data_path`` is the model's ``data/`` folder."""
    import keras

    # Registers the layers: the copy beside this file in the model's code/ folder, or the
    # package's own when this module is imported as edsr_mlflow.edsr_pyfunc.
    importlib.import_module(f"{__package__}.edsr_layers" if __package__ else "edsr_layers")
    return SuperResolver(keras.saving.load_model(Path(data_path) / KERAS_FILE, safe_mode=True))
