"""Reading runs back from the MLflow tracking store, and storing what ``compare`` makes of them.

The query side of MLflow (``tracking`` is the write side of training runs): which runs a
comparison covers, their params and final metrics as one pandas DataFrame (one
``search_runs`` query, whatever the number of runs), the metric histories of a few chosen
runs, their logged sample images; and the few calls that record a comparison run.

This module imports neither Keras nor TensorFlow, so querying stays fast.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from .errors import TrackingError, UserError
from .schema import COMPARISON, KIND_TAG, PARENT_RUN_TAG, SWEEP, SWEEP_TAG, TRAIN, eval_table_path

SAMPLES_FOLDER = "samples"
RUN_ID_PATTERN = re.compile(r"[0-9a-zA-Z_-]{1,64}")
# What a value inside a search filter may hold: MLflow's filter grammar has no escape for a quote,
# so values are checked, never escaped (a sweep name once selected other sweeps' runs).
FILTER_VALUE_PATTERN = re.compile(r"[A-Za-z0-9_.:+-]{1,256}")


def filter_literal(value: str) -> str:
    """``value`` as a quoted literal for an MLflow search filter; refuses anything but letters,
    digits and ``_ . : + -`` (no quote, space or operator can reach the filter)."""
    if not isinstance(value, str) or not FILTER_VALUE_PATTERN.fullmatch(value):
        raise UserError(f"{value!r} cannot be searched for in MLflow: use letters, digits and _ . : + - only")
    return f"'{value}'"


@dataclass(frozen=True)
class Scope:
    """Which training runs a comparison covers.

    ``experiment_ids`` None means every active experiment; ``parent_run_ids`` empty means
    children or not. ``description`` names the scope for messages, e.g. "experiment 'study'" or
    "the child runs of run 3f2a...".
    """

    experiment_ids: tuple[str, ...] | None
    parent_run_ids: tuple[str, ...]
    description: str


def comparison_scope(experiment: str | None, parent_run_id: str | None, sweep: str | None = None) -> Scope:
    """Resolves ``--experiment`` and ``--parent-run-id``; unknown names are one-line errors.
    ``sweep`` (with ``experiment``): the child runs of every parent run of that sweep, so a sweep
    launched several times is compared whole.

    None given: the training runs of every active experiment.
    """
    experiment_ids = None
    description = "any experiment"
    if experiment:
        experiment_ids = (_experiment_id(experiment),)
        description = f"experiment '{experiment}'"
    if parent_run_id:
        parent = existing_run(parent_run_id, role="sweep's parent run")
        if experiment_ids and parent.info.experiment_id != experiment_ids[0]:
            raise UserError(
                f"run {parent_run_id} is in experiment {parent.info.experiment_id}, not in '{experiment}'; "
                "drop --experiment or pass the experiment that holds the run"
            )
        experiment_ids = (parent.info.experiment_id,)
        description = f"the child runs of run {parent_run_id}"
    parent_run_ids = (parent_run_id,) if parent_run_id else ()
    if sweep:
        if not experiment or parent_run_id:
            raise ValueError("a sweep is named by its name and experiment alone")
        parent_run_ids = tuple(sweep_parent_ids(sweep, experiment_ids[0]))
        if not parent_run_ids:
            raise TrackingError(f"no sweep '{sweep}' in experiment '{experiment}' of {mlflow.get_tracking_uri()}; run it first")
        description = f"the child runs of sweep '{sweep}' ({len(parent_run_ids)} parent runs) in experiment '{experiment}'"
    return Scope(experiment_ids, parent_run_ids, description)


def _experiment_id(name: str) -> str:
    try:
        found = mlflow.get_experiment_by_name(name)
        if found is not None and found.lifecycle_stage == "active":
            return found.experiment_id
        known = sorted(e.name for e in mlflow.search_experiments(view_type=ViewType.ACTIVE_ONLY))
    except MlflowException as error:
        raise _store_error(error) from None
    shown = ", ".join(f"'{n}'" for n in known[:10]) + (", ..." if len(known) > 10 else "")
    state = "is deleted" if found is not None else "does not exist"
    raise TrackingError(
        f"experiment '{name}' {state} in {mlflow.get_tracking_uri()}; pass one of {shown or 'none (the store is empty)'} "
        "or check MLFLOW_TRACKING_URI"
    )


def existing_run(run_id: str, role: str = "run"):
    """The MLflow run ``run_id`` (status, params...); one line if ``run_id`` is not a run id or
    no run of the store. ``role`` names what the id was given as, for the message."""
    if not RUN_ID_PATTERN.fullmatch(run_id or ""):
        raise UserError(f"{run_id!r} is not a run id; pass the 32-character id of the {role}")
    try:
        return mlflow.MlflowClient().get_run(run_id)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise TrackingError(f"run {run_id} is not in {mlflow.get_tracking_uri()}; check the {role} id and MLFLOW_TRACKING_URI") from None
        raise _store_error(error) from None


def tracking_error(error: BaseException, what: str, fix: str) -> TrackingError:
    """One line for a failed MLflow call: what failed, the first line of MLflow's message, the fix."""
    text = str(getattr(error, "message", "") or error).strip()
    detail = text.splitlines()[0] if text else getattr(error, "error_code", type(error).__name__)
    return TrackingError(f"{what} ({detail}); {fix}")


def _store_error(error: MlflowException) -> TrackingError:
    return tracking_error(error, f"the tracking store {mlflow.get_tracking_uri()} failed", "check MLFLOW_TRACKING_URI")


def training_filter(parent_run_id: str | None = None) -> str:
    """The search filter of training runs (kind ``train``), optionally children of one run."""
    clauses = [f"tags.`{KIND_TAG}` = '{TRAIN}'"]
    if parent_run_id:
        clauses.append(f"tags.`{PARENT_RUN_TAG}` = {filter_literal(parent_run_id)}")
    return " and ".join(clauses)


def training_runs(scope: Scope) -> pd.DataFrame:
    """Every active training run in ``scope``, whatever its status, in one query (one per parent
    run where the scope names several: MLflow 3.17's filter has neither OR nor IN for tags).

    One row per run, MLflow's ``search_runs`` columns: ``run_id``, ``experiment_id``,
    ``status``, ``params.<name>`` (strings), ``metrics.<name>`` (each metric's latest value),
    ``tags.<name>``. Deleted runs are not included.
    """
    try:
        frames = [
            mlflow.search_runs(
                experiment_ids=list(scope.experiment_ids) if scope.experiment_ids else None,
                search_all_experiments=scope.experiment_ids is None,
                filter_string=training_filter(parent_run_id),
                run_view_type=ViewType.ACTIVE_ONLY,
                output_format="pandas",
            )
            for parent_run_id in scope.parent_run_ids or (None,)
        ]
    except MlflowException as error:
        raise _store_error(error) from None
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else (frames[0] if frames else pd.DataFrame())


def metric_histories(run_ids: list[str], metric: str) -> pd.DataFrame:
    """Every logged value of ``metric`` for each of ``run_ids`` (one request per run): columns
    ``run_id``, ``step``, ``value``, sorted by run and step."""
    client = mlflow.MlflowClient()
    rows = [
        (run_id, point.step, point.value)
        for run_id in run_ids
        for point in client.get_metric_history(run_id, metric)
    ]
    return pd.DataFrame(rows, columns=["run_id", "step", "value"]).sort_values(["run_id", "step"], ignore_index=True)


def eval_tables(runs: list[tuple[str, int]], dataset: str) -> dict[str, pd.DataFrame]:
    """The per-image score table ``eval/<dataset>_x<scale>.csv`` of each ``(run id, scale)``
    (one request per run), by run id; runs without a readable one are left out."""
    tables = {}
    with tempfile.TemporaryDirectory() as tmp, no_progress_bar():
        for run_id, scale in runs:
            try:
                path = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=eval_table_path(dataset, scale), dst_path=str(Path(tmp) / run_id))
                tables[run_id] = pd.read_csv(path)
            except (MlflowException, OSError, ValueError):  # none logged, or not a table
                continue
    return tables


def download_first_sample(run_id: str, destination: Path) -> Path | None:
    """Downloads the first (by name) ``samples/*.png`` artifact of ``run_id`` into
    ``destination``; None if the run logged none (or its artifacts cannot be read)."""
    try:
        files = mlflow.MlflowClient().list_artifacts(run_id, SAMPLES_FOLDER)
        pngs = sorted(f.path for f in files if not f.is_dir and f.path.lower().endswith(".png"))
        if not pngs:
            return None
        destination.mkdir(parents=True, exist_ok=True)
        with no_progress_bar():
            return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=pngs[0], dst_path=str(destination)))
    except (MlflowException, OSError):
        return None


@contextlib.contextmanager
def no_progress_bar():
    """One progress bar per tiny download drowns the table; a user's own setting wins."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if name in os.environ:
        yield
        return
    os.environ[name] = "false"
    try:
        yield
    finally:
        os.environ.pop(name, None)


def experiment_name(experiment_id: str) -> str:
    return mlflow.MlflowClient().get_experiment(experiment_id).name


def start_comparison_run(experiment_id: str, params: dict[str, object]) -> mlflow.ActiveRun:
    """Opens the run named ``comparison`` (tag ``edsr_mlflow.kind=comparison``) and logs
    ``params``. Inside ``mlflow run`` the run MLflow created is used (``MLFLOW_RUN_ID``), in
    the experiment MLflow chose for it. Close it with ``tracking.closing_run``."""
    run = mlflow.start_run(experiment_id=experiment_id, run_name=COMPARISON, tags={KIND_TAG: COMPARISON})
    log_new_params(run.info.run_id, params)
    return run


def log_new_params(run_id: str, params: dict[str, object]) -> None:
    """Logs the params the run lacks. Inside ``mlflow run``, MLflow has already logged the entry
    point's parameters (as the strings it substituted, e.g. ``''`` for an empty value), and a
    logged param cannot change."""
    logged = mlflow.MlflowClient().get_run(run_id).data.params
    mlflow.log_params({k: v for k, v in params.items() if k not in logged})


def log_files(paths: list[Path], artifact_path: str | None = None) -> None:
    """Logs each file under ``artifact_path`` (None: the artifact root) of the active run."""
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


# ---------------------------------------------------------------- sweeps


def sweep_parent_ids(name: str, experiment_id: str) -> list[str]:
    """Parent runs of the sweep called ``name``, newest first."""
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{KIND_TAG}` = '{SWEEP}' and tags.{SWEEP_TAG} = {filter_literal(name)}",
        order_by=["attributes.start_time DESC"], output_format="list",
    )
    return [r.info.run_id for r in runs]


def sweep_children(name: str, experiment_id: str) -> list[tuple[str, str, dict[str, str], set[str]]]:
    """(run id, status, params, metric names) of every training run under any parent of sweep ``name``."""
    children = []
    for parent_id in sweep_parent_ids(name, experiment_id):
        runs = mlflow.search_runs(experiment_ids=[experiment_id], filter_string=training_filter(parent_id), output_format="list")
        children += [(r.info.run_id, r.info.status, r.data.params, set(r.data.metrics)) for r in runs]
    return children
