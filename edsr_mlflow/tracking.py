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
import time
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np

from . import run_store
from .config import TrainConfig
from .errors import TrackingError
from .images import DatasetInfo
from .schema import (
    DEFAULT_EXPERIMENT,
    EPOCH_METRICS,
    EVALUATE,
    EXPERIMENT_KIND_TAG,
    KIND_TAG,
    MODEL_TRAINING_KIND,
    PARENT_RUN_TAG,
    RUN_NAME_TAG,
    SWEEP,
    SWEEP_LAUNCH,
    SWEEP_PARENT_TAG,
    SWEEP_TAG,
    TRAIN,
    UI_MODEL_TRAINING_QUERY,
)

log = logging.getLogger(__name__)

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

        base = uri.rstrip("/")
        try:
            response = requests.get(base + "/health", timeout=timeout_s)
            if response.ok:  # /health is open to all; an API call shows whether we may log
                response = requests.get(base + "/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                                        auth=_basic_auth(), timeout=timeout_s)
        except requests.RequestException as error:
            reason = type(error).__name__
            raise TrackingError(
                f"cannot reach the MLflow tracking server at {uri} ({reason}); start it "
                "(mlflow server --host 127.0.0.1 --port 5000) or unset MLFLOW_TRACKING_URI to log to sqlite:///mlflow.db"
            ) from None
        if response.status_code in (401, 403):
            fix = ("check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" if _basic_auth()
                   else "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
            raise TrackingError(f"the MLflow tracking server at {uri} refused access (HTTP {response.status_code}); {fix}")
        if response.status_code >= 400:
            raise TrackingError(f"the MLflow tracking server at {uri} answered HTTP {response.status_code}; check the server's log")
    elif parsed.scheme == "sqlite":
        path = Path(uri.split("sqlite:///", 1)[-1])
        if path.parent and not path.parent.exists():
            raise TrackingError(f"the folder of the tracking database {path} does not exist; create it or set MLFLOW_TRACKING_URI")
        if path.is_file():
            _check_sqlite_schema(uri, path)
    return uri


# What MLflow says of a SQLite file whose table creation was cut short (a first command killed
# while MLflow set the store up): every later command fails the same way.
_HALF_CREATED_STORE = ("already exists", "duplicate column", "out-of-date database schema", "no such table")


def _check_sqlite_schema(uri: str, path: Path) -> None:
    try:
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001  sqlalchemy's OperationalError or MlflowException
        if not any(marker in str(error) for marker in _HALF_CREATED_STORE):
            raise
        raise TrackingError(
            f"the tracking database {path} is half set up (a command was stopped while MLflow created its tables); "
            f"if it holds no runs yet, move it away (mv {path} {path}.broken) and run again, else try `mlflow db upgrade {uri}` on a copy"
        ) from None


def _basic_auth() -> tuple[str, str] | None:
    """The credentials MLflow's client sends to a server with basic authentication."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return (user, password) if user and password else None


# ---------------------------------------------------------------- experiments


def experiment_id_named(name: str) -> str:
    """The id of experiment ``name``; created (marked as model training) if there is none. A
    parallel process creating it first is no error; a deleted one is (MLflow keeps its name)."""
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
        except mlflow.exceptions.MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if experiment.lifecycle_stage != "active":
        raise TrackingError(
            f"experiment '{name}' is deleted in {tracking_uri()}; restore it "
            f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or name another one"
        )
    return experiment.experiment_id


def experiment_for_new_run(name: str | None = None) -> str | None:
    """Where a new run goes: experiment ``name`` if given; else None, MLflow's own choice, where
    ``MLFLOW_EXPERIMENT_ID`` or ``MLFLOW_EXPERIMENT_NAME`` names one (``mlflow run`` and
    ``mlflow.set_experiment`` set the first) or ``MLFLOW_RUN_ID`` names the run; else
    :data:`~edsr_mlflow.schema.DEFAULT_EXPERIMENT`, never MLflow's "Default"."""
    if name:
        return experiment_id_named(name)
    if any(os.environ.get(v) for v in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")):
        return None
    return experiment_id_named(DEFAULT_EXPERIMENT)


def mark_model_training(experiment_id: str) -> None:
    """Tags the experiment as model training (``mlflow.experimentKind``) if it has no kind yet;
    a kind someone chose stays theirs."""
    client = mlflow.MlflowClient()
    if EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)


def ui_runs_page(experiment_id: str, server: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI's page of an experiment's runs, opened in its model-training view."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs?{UI_MODEL_TRAINING_QUERY}"


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


def _lost_connection(error: BaseException) -> bool:
    """Whether ``error`` says the tracking server stopped answering (after MLflow's retries)."""
    import requests

    if isinstance(error, requests.RequestException):
        return True
    return isinstance(error, mlflow.exceptions.MlflowException) and "API request to" in str(error) and (
        "Max retries exceeded" in str(error) or "Connection" in str(error)
    )


@contextlib.contextmanager
def closing_run(run: mlflow.ActiveRun, resume_hint: str = ""):
    """Ends ``run`` FINISHED, FAILED on an exception, KILLED on Ctrl-C; re-raises.

    If the tracking server went away, the run cannot be closed there: a one-line
    :class:`TrackingError` says so, with ``resume_hint`` (how to carry on once it is back).
    """
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException as error:
        # A server that stopped answering would take MLflow's whole retry time again to refuse
        # end_run: say so at once (the run stays RUNNING there until resumed).
        if not _lost_connection(error):
            try:
                mlflow.end_run("FAILED")
            except Exception as end_error:  # noqa: BLE001  the server went away just now: say so below
                if not _lost_connection(end_error):
                    raise
                error = end_error
        if _lost_connection(error):
            raise TrackingError(
                f"lost the MLflow tracking server at {tracking_uri()} during run {run.info.run_id}; "
                + (resume_hint or "check the server and its log")
            ) from None
        raise
    else:
        mlflow.end_run("FINISHED")


@contextlib.contextmanager
def training_run(config: TrainConfig, *, resume_run_id: str | None = None, experiment: str | None = None, parent_run_id: str | None = None):
    """Opens a training run and logs what it is before the first step.

    Logged at once: every config field as a param, tags ``upsampler``, ``blocks``, ``scale``,
    ``git_commit`` and the run name (e.g. ``edsr_x4_b8_f64_transpose``). Inside
    ``mlflow run`` the run MLflow created is used (``MLFLOW_RUN_ID``). A new run goes to
    ``experiment``, else where MLflow's environment says, else the default experiment
    (:func:`experiment_for_new_run`); a sweep's child to its parent's.
    """
    check_tracking_server()
    tags = {
        KIND_TAG: TRAIN,
        "upsampler": config.upsampler,
        "blocks": str(config.blocks),
        "scale": str(config.scale),
        "mlflow.runName": config.run_name,
    }
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    if resume_run_id:
        experiment_id = None  # the run's own
    elif parent_run_id:  # a sweep's child: in its parent's experiment
        experiment_id = mlflow.get_run(parent_run_id).info.experiment_id
    else:
        experiment_id = experiment_for_new_run(experiment)
    run = mlflow.start_run(
        run_id=resume_run_id, experiment_id=experiment_id, run_name=None if resume_run_id else config.run_name,
        parent_run_id=parent_run_id, tags=tags, log_system_metrics=True,
    )
    hint = (f"training is checkpointed: when the server is back, run `edsr-mlflow train --resume {run.info.run_id}` "
            "(with the same --checkpoint-dir)")
    with closing_run(run, resume_hint=hint):
        mark_model_training(run.info.experiment_id)
        run_store.log_new_params(run.info.run_id, config.as_params())
        yield run


def log_datasets(train_info: DatasetInfo, val_info: DatasetInfo) -> None:
    """Records which images a run trained and validated on (``mlflow.log_input``)."""
    for info, context in ((train_info, "training"), (val_info, "validation")):
        dataset = _as_mlflow_dataset(info)
        _retry_lost_insert_race(lambda: mlflow.log_input(dataset, context=context))


def _retry_lost_insert_race(write, attempts: int = 4) -> None:
    """Runs ``write``, again if it lost a race with another process. Parallel runs logging the
    same dataset race in MLflow's get-or-create of the dataset row (seen with --max-parallel 4
    on one SQLite file: "UNIQUE constraint failed: datasets..."); the loser's retry finds the
    row the winner made."""
    for attempt in range(attempts):
        try:
            return write()
        except mlflow.exceptions.MlflowException as error:
            text = str(error).lower()
            raced = "unique constraint" in text or "duplicate key" in text or "database is locked" in text
            if not raced or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt)


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


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    """Tags an existing run without reopening it (its status stays)."""
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def run_params(run_id: str) -> dict[str, str]:
    """The params of an existing run (to resume it)."""
    return run_store.existing_run(run_id).data.params


def model_run_id(model_uri: str) -> str | None:
    """The run that logged ``model_uri``, if any."""
    try:
        with run_store.no_progress_bar():
            return mlflow.models.get_model_info(model_uri).run_id
    except (mlflow.exceptions.MlflowException, OSError) as error:
        raise run_store.tracking_error(error, f"model {model_uri} not found in {tracking_uri()}", "check the URI") from None


def log_to_run(run_id: str, metrics: dict[str, float], tables: dict[str, object]) -> None:
    """Adds metrics and CSV tables to an existing run without reopening it (its status stays)."""
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    with tempfile.TemporaryDirectory() as tmp:
        for artifact_file, frame in tables.items():
            path = Path(tmp) / Path(artifact_file).name
            frame.to_csv(path, index=False)
            client.log_artifact(run_id, str(path), artifact_path=str(Path(artifact_file).parent))


@contextlib.contextmanager
def evaluation_run(run_name: str, tags: dict[str, str], params: dict[str, object]):
    """A new run for an evaluation that has no training run (the bicubic baseline)."""
    check_tracking_server()
    run = mlflow.start_run(experiment_id=experiment_for_new_run(), run_name=run_name, tags={KIND_TAG: EVALUATE, **tags})
    with closing_run(run):
        mark_model_training(run.info.experiment_id)
        run_store.log_new_params(run.info.run_id, params)  # inside `mlflow run -e evaluate`, some are logged
        yield run


# ---------------------------------------------------------------- sweeps


def create_child_run(experiment_id: str, parent_run_id: str, run_name: str) -> str:
    """A training run under ``parent_run_id``, made before its process starts (which takes it over
    through ``MLFLOW_RUN_ID``), so the sweep knows its id without reading any output."""
    tags = {KIND_TAG: TRAIN, PARENT_RUN_TAG: parent_run_id, RUN_NAME_TAG: run_name}
    return mlflow.MlflowClient().create_run(experiment_id, run_name=run_name, tags=tags).info.run_id


def close_if_running(run_id: str, status: str) -> str:
    """Ends ``run_id`` with ``status`` if it is still RUNNING (its process died before it could
    close it, or never opened it); returns the run's status afterwards."""
    client = mlflow.MlflowClient()
    current = client.get_run(run_id).info.status
    if current == "RUNNING":
        client.set_terminated(run_id, status)
        return status
    return current


@contextlib.contextmanager
def sweep_parent_run(name: str, experiment: str, params: dict[str, object]):
    """The parent run of sweep ``name``, in the grid's ``experiment`` whichever the launcher: the
    sweep's earlier parent (so re-running it resumes it), else a new one.

    Inside ``mlflow run -e sweep``, MLflow has made a run of its own (``MLFLOW_RUN_ID``, in
    the experiment MLflow chose) before this code starts; that run becomes a record of the
    launch (:func:`_launch_record`), not a second parent.
    """
    check_tracking_server()
    experiment_id = experiment_id_named(experiment)
    earlier = run_store.sweep_parent_ids(name, experiment_id)
    launch_id = os.environ.pop("MLFLOW_RUN_ID", None)  # taken here, so that no run started below resumes it
    with _launch_record(launch_id) if launch_id else contextlib.nullcontext():
        run = mlflow.start_run(
            run_id=earlier[0] if earlier else None, experiment_id=None if earlier else experiment_id,
            run_name=None if earlier else f"sweep_{name}", tags={KIND_TAG: SWEEP, SWEEP_TAG: name},
        )
        with closing_run(run):
            if launch_id:
                _tag_launch(launch_id, name, run)
            mark_model_training(experiment_id)
            run_store.log_new_params(run.info.run_id, params)
            yield run


@contextlib.contextmanager
def _launch_record(run_id: str):
    """Closes MLflow's run of an ``mlflow run -e sweep`` launch as the sweep ends: FINISHED,
    KILLED on Ctrl-C, FAILED on an error (which is re-raised, whatever closing makes of it)."""
    client = mlflow.MlflowClient()
    try:
        yield
    except BaseException as error:
        with contextlib.suppress(Exception):  # a lost server: the error below says so
            client.set_terminated(run_id, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


def _tag_launch(run_id: str, name: str, parent: mlflow.ActiveRun) -> None:
    """Marks MLflow's run of a launch as that (``edsr_mlflow.kind=sweep_launch``), with the
    sweep's name and parent run, nested under the parent where both share an experiment."""
    from mlflow.entities import RunTag

    client = mlflow.MlflowClient()
    experiment_id = client.get_run(run_id).info.experiment_id
    tags = {KIND_TAG: SWEEP_LAUNCH, SWEEP_TAG: name, SWEEP_PARENT_TAG: parent.info.run_id}
    if experiment_id == parent.info.experiment_id:
        tags[PARENT_RUN_TAG] = parent.info.run_id
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])
    client.update_run(run_id, name=f"sweep_{name}_launch")
    mark_model_training(experiment_id)
