"""The Keras side of tracking: the per-epoch callback, and logging and loading the model.

Kept apart from :mod:`tracking` so that what only reads or writes runs (``compare`` above all)
never imports TensorFlow.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import keras
import mlflow
import numpy as np

from . import edsr_pyfunc, run_store
from .errors import TrackingError
from .schema import EPOCH_METRICS
from .tracking import tracking_uri


class EpochLogger(keras.callbacks.Callback):
    """Logs each epoch's metrics in one call, at step = epoch number (1-based)."""

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        mlflow.log_metrics({k: float(logs[k]) for k in EPOCH_METRICS if k in logs}, step=epoch + 1)


# Shipped in every logged model's code/ folder; MLflow loads the pyfunc through the second.
SHIPPED_MODULES = ("edsr_layers", "edsr_pyfunc")
PYFUNC_LOADER = "edsr_pyfunc"


def log_keras_model(model: keras.Model) -> None:
    """Logs the model as ``model``, a LoggedModel of the active run, in the form
    :func:`save_standalone_model` writes."""
    from mlflow.models import Model

    Model.log(artifact_path=None, name="model", flavor=SimpleNamespace(save_model=save_standalone_model), flavor_name="keras",
              keras_model=model)


def save_standalone_model(path: str, mlflow_model=None, *, keras_model: keras.Model) -> None:
    """Saves a model folder at ``path`` that stands alone (``Model.log`` calls this as its
    flavour's ``save_model``).

    The keras flavour is mlflow.keras's (``data/model.keras``); :data:`SHIPPED_MODULES` go in
    ``code/`` and the ``python_function`` flavour loads through them (see :mod:`edsr_pyfunc`),
    so ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` need no ``edsr_mlflow``. The
    pyfunc takes float32 RGB in 0..255 of any size and answers uint8 images. No input example:
    MLflow would then validate serving by reloading the model and running it, about a second
    per run (benchmarks/tracking_overhead.py); tests load and run every logged model instead.
    """
    import mlflow.keras
    import mlflow.pyfunc
    import tensorflow as tf
    from mlflow.models import Model, ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, 3))]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]),
    )
    mlflow_model = mlflow_model if mlflow_model is not None else Model()
    mlflow.keras.save_model(
        keras_model, path, mlflow_model=mlflow_model, signature=signature,
        # Inferring requirements would reload the model in a subprocess (seconds); name them.
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}", f"numpy=={np.__version__}"],
    )
    code = Path(path) / "code"
    code.mkdir()
    for module in SHIPPED_MODULES:
        shutil.copyfile(Path(__file__).with_name(f"{module}.py"), code / f"{module}.py")
    keras_pyfunc = mlflow_model.flavors[mlflow.pyfunc.FLAVOR_NAME]
    mlflow.pyfunc.add_to_model(mlflow_model, loader_module=PYFUNC_LOADER, data="data", code="code", env=keras_pyfunc[mlflow.pyfunc.ENV],
                               model_config=dict(edsr_pyfunc.DEFAULT_CONFIG))
    mlflow_model.save(str(Path(path) / "MLmodel"))


def load_keras_model(model_uri: str) -> keras.Model:
    """Loads a model this project logged (``runs:/<id>/model``, ``models:/<name>/<version>``...).

    Only the form :func:`log_keras_model` writes is accepted: an MLmodel whose ``keras`` flavour
    points at ``data/model.keras``, loaded here with Keras' safe mode. Anything else is refused
    before it is read: in particular ``save_exported_model: true``, which ``mlflow.keras`` would
    hand to ``tf.saved_model.load`` (a TensorFlow graph runs whatever ops it holds, file writes
    included, and has no safe mode), and a ``.keras`` file with a ``Lambda`` layer.
    """
    from . import edsr_layers  # noqa: F401  registers the custom layers with Keras

    # The downloaded copy goes once the model is in memory: Keras reads the whole .keras file.
    with tempfile.TemporaryDirectory(prefix="edsr-model-") as download:
        return _load_downloaded(model_uri, download)


def _load_downloaded(model_uri: str, download: str) -> keras.Model:
    from mlflow.tracking.artifact_utils import _download_artifact_from_uri

    try:
        with run_store.no_progress_bar():
            local = Path(_download_artifact_from_uri(artifact_uri=model_uri, output_path=download))
    except (mlflow.exceptions.MlflowException, OSError) as error:
        raise run_store.tracking_error(error, f"cannot load model {model_uri} from {tracking_uri()}",
                                       "check the URI with the MLflow UI") from None
    keras_file = logged_keras_file(local)
    if isinstance(keras_file, str):
        raise TrackingError(f"refusing to load {model_uri}: {keras_file}; load only models that edsr-mlflow train logged")
    try:
        return keras.saving.load_model(keras_file, safe_mode=True)
    except (ValueError, TypeError, OSError, KeyError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise TrackingError(f"refusing to load {model_uri}: Keras' safe mode rejected it ({reason}); "
                            "load only models that edsr-mlflow train logged") from None


def logged_keras_file(model_dir: Path) -> Path | str:
    """``model_dir/data/model.keras`` if ``model_dir`` is a model in the form this project logs,
    else why not (a short phrase). Reads only the MLmodel file."""
    import yaml

    try:
        meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    except (OSError, yaml.YAMLError):
        return "it has no readable MLmodel file"
    flavor = (meta.get("flavors") or {}).get("keras") if isinstance(meta, dict) else None
    if not isinstance(flavor, dict):
        return "it is not a Keras model (no keras flavour in its MLmodel)"
    if flavor.get("save_exported_model"):
        return "it is an exported TensorFlow graph (save_exported_model), which cannot be loaded safely"
    if flavor.get("data", "data") != "data":
        return f"its keras flavour points at {flavor.get('data')!r}, not data/"
    keras_file = model_dir / "data" / "model.keras"
    if keras_file.is_symlink() or not keras_file.is_file():
        return "it has no data/model.keras file"
    return keras_file
