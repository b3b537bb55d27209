"""Everything that writes to MLflow during a run. No other module (but the query side in
``run_store``) imports mlflow, so model, data and metric code stay testable without a store.

Run lifecycle: :func:`training_run` opens (or resumes) a run, logs the configuration before
anything can fail, and always closes it: FINISHED, FAILED (exception) or KILLED (Ctrl-C,
SIGTERM), never left RUNNING.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import keras
import mlflow
import numpy as np

from .config import TrainConfig
from .data import DatasetInfo
from .errors import TrackingError

log = logging.getLogger(__name__)

EPOCH_METRICS = ("train_loss", "val_psnr", "val_ssim", "val_psnr_rgb", "step_time_ms", "patches_per_s", "learning_rate")
KIND_TAG = "edsr_mlflow.kind"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else MLflow 3's default local store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def check_tracking_server(uri: str | None = None, timeout_s: float = 5.0) -> str:
    """Fails fast with a one-line error when the tracking store cannot be used.

    MLflow's own client retries an unreachable server for minutes; a user deserves to
    know at once.
    """
    uri = uri or tracking_uri()
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        import requests

        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=timeout_s)
        except requests.RequestException as error:
            reason = type(error).__name__
            raise TrackingError(
                f"cannot reach the MLflow tracking server at {uri} ({reason}); start it "
                "(mlflow server --host 127.0.0.1 --port 5000) or unset MLFLOW_TRACKING_URI to log to sqlite:///mlflow.db"
            ) from None
        if response.status_code in (401, 403):
            raise TrackingError(
                f"the MLflow tracking server at {uri} refused access (HTTP {response.status_code}); "
                "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            )
        if response.status_code >= 400:
            raise TrackingError(f"the MLflow tracking server at {uri} answered HTTP {response.status_code} on /health; check the server's log")
    elif parsed.scheme == "sqlite":
        path = Path(uri.split("sqlite:///", 1)[-1])
        if path.parent and not path.parent.exists():
            raise TrackingError(f"the folder of the tracking database {path} does not exist; create it or set MLFLOW_TRACKING_URI")
    return uri


def git_commit() -> str | None:
    """The commit of this package's checkout, if it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@contextlib.contextmanager
def closing_run(run: mlflow.ActiveRun):
    """Ends ``run`` FINISHED, FAILED on an exception, KILLED on Ctrl-C; re-raises."""
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")


@contextlib.contextmanager
def training_run(config: TrainConfig, *, resume_run_id: str | None = None, experiment: str | None = None, parent_run_id: str | None = None):
    """Opens a training run and logs what it is before the first step.

    Logged at once: every config field as a param, tags ``upsampler``, ``blocks``, ``scale``,
    ``git_commit`` and the run name (e.g. ``edsr_x4_b8_f64_transpose``). Inside
    ``mlflow run`` the run MLflow created is used (``MLFLOW_RUN_ID``).
    """
    check_tracking_server()
    if experiment:
        mlflow.set_experiment(experiment)
    tags = {
        KIND_TAG: "train",
        "upsampler": config.upsampler,
        "blocks": str(config.blocks),
        "scale": str(config.scale),
        "mlflow.runName": config.run_name,
    }
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    run = mlflow.start_run(
        run_id=resume_run_id, run_name=None if resume_run_id else config.run_name,
        parent_run_id=parent_run_id, tags=tags, log_system_metrics=True,
    )
    with closing_run(run):
        if not resume_run_id:
            mlflow.log_params(config.as_params())
        yield run


def log_datasets(train_info: DatasetInfo, val_info: DatasetInfo) -> None:
    """Records which images a run trained and validated on (``mlflow.log_input``)."""
    for info, context in ((train_info, "training"), (val_info, "validation")):
        mlflow.log_input(_as_mlflow_dataset(info), context=context)


def _as_mlflow_dataset(info: DatasetInfo):
    import pandas as pd
    from mlflow.data.meta_dataset import MetaDataset

    if info.source.startswith("tfds:"):
        from mlflow.data.http_dataset_source import HTTPDatasetSource

        return MetaDataset(HTTPDatasetSource("https://www.tensorflow.org/datasets/catalog/div2k"), name=info.name, digest=info.digest)
    from mlflow.data.dataset_source_registry import get_registered_sources

    # Named explicitly: resolving a bare path warns that two sources could claim it.
    local_source = next(s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource")
    frame = pd.DataFrame({"image": list(info.image_names)})
    return mlflow.data.from_pandas(frame, source=local_source(info.source), name=info.name, digest=info.digest)


def log_model_facts(params_count: int, macs_per_lr_pixel: int) -> None:
    mlflow.log_params({"params_count": params_count, "macs_per_lr_pixel": macs_per_lr_pixel})


class EpochLogger(keras.callbacks.Callback):
    """Logs each epoch's metrics in one call, at step = epoch number (1-based)."""

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        mlflow.log_metrics({k: float(logs[k]) for k in EPOCH_METRICS if k in logs}, step=epoch + 1)


def logged_epochs(run_id: str) -> set[int]:
    """Epochs of ``run_id`` whose metrics are already in the store."""
    history = mlflow.MlflowClient().get_metric_history(run_id, "val_psnr")
    return {m.step for m in history}


def log_epoch_history(history: list[dict[str, float]], skip: set[int]) -> None:
    """Logs checkpointed epochs the store lacks (a crash between checkpoint and logging)."""
    for epoch, metrics in enumerate(history, start=1):
        if epoch not in skip:
            mlflow.log_metrics({k: float(metrics[k]) for k in EPOCH_METRICS if k in metrics}, step=epoch)


def log_final_metrics(metrics: dict[str, float]) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})


def log_visual_samples(samples: list[tuple[str, np.ndarray]]) -> None:
    for name, image in samples:
        mlflow.log_image(image, artifact_file=f"samples/{Path(name).stem}.png")


def log_keras_model(model: keras.Model, example_lr_image: np.ndarray) -> None:
    """Logs the model as ``model`` with a signature that accepts any image size.

    Loading it back needs ``edsr_mlflow`` importable: ``import edsr_mlflow.model`` registers
    its three small layers (NormalizeRGB, PixelShuffle, Scale) with Keras.
    """
    import mlflow.keras
    import tensorflow as tf
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    image_spec = TensorSpec(np.dtype(np.float32), (-1, -1, -1, 3), name=None)
    signature = ModelSignature(inputs=Schema([image_spec]), outputs=Schema([image_spec]))
    with _model_dir_created_before_example():
        mlflow.keras.log_model(
            model, name="model", signature=signature,
            input_example=example_lr_image[None].astype(np.float32),
            # Inferring requirements reloads the model without this package's layers; name them.
            pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}", f"numpy=={np.__version__}"],
        )


@contextlib.contextmanager
def _model_dir_created_before_example():
    """Works around mlflow/mlflow#16183 (open): ``mlflow.keras`` writes the input example
    before creating the model folder, so ``log_model(..., input_example=...)`` fails."""
    import mlflow.keras.save as keras_save

    original = keras_save._save_example

    def save_example(mlflow_model, input_example, path, *args, **kwargs):
        os.makedirs(path, exist_ok=True)
        return original(mlflow_model, input_example, path, *args, **kwargs)

    keras_save._save_example = save_example
    try:
        yield
    finally:
        keras_save._save_example = original


def log_table(frame, artifact_file: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        frame.to_csv(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(artifact_file).parent) if "/" in artifact_file else None)


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def run_params(run_id: str) -> dict[str, str]:
    """The params of an existing run (to resume it)."""
    try:
        return mlflow.MlflowClient().get_run(run_id).data.params
    except mlflow.exceptions.MlflowException as error:
        raise TrackingError(f"run {run_id} is not in {tracking_uri()} ({error.error_code}); check the run id and MLFLOW_TRACKING_URI") from None
