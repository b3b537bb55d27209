"""Runs that ``mlflow run`` left RUNNING without this project ever starting, found and closed.

``mlflow run .`` makes its run before it builds the project's environment. When that fails
(no conda on PATH, a package that will not install) or is interrupted, MLflow exits and the
run stays RUNNING for ever, holding the entry point's parameters and nothing else. Such a run
is *stale*: RUNNING, made by MLflow Projects for one of this project's entry points, without
the kind tag this project's code sets as soon as it starts, without a single metric, and
older than a threshold (an environment still being built is young). A run this project
started is never stale: one killed mid-training keeps its checkpoints and is resumed, not
closed. ``compare`` reports stale runs; ``edsr-mlflow runs clean --stale`` closes them,
naming each. No TensorFlow here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException

from .run_store import tracking_error
from .schema import CLOSED_STALE_TAG, KIND_TAG

ENTRY_POINTS = ("main", "train", "evaluate", "compare", "sweep")  # the MLproject's
DEFAULT_MIN_AGE_MINUTES = 60.0
SOURCE_TYPE_TAG, ENTRY_POINT_TAG = "mlflow.source.type", "mlflow.project.entryPoint"
CLOSED_STATUS = "FAILED"  # what happened: the launch failed before the project ran
CLOSED_REASON = "mlflow run left it RUNNING before the project started (e.g. no conda); closed by `edsr-mlflow runs clean --stale`"


@dataclass(frozen=True)
class StaleRun:
    run_id: str
    run_name: str
    experiment_name: str
    entry_point: str
    age_s: float

    def describe(self) -> str:
        return (f"{self.run_name} (run {self.run_id}, experiment '{self.experiment_name}', "
                f"entry point {self.entry_point}, {_age(self.age_s)} old)")


def is_stale(status: str, tags: dict[str, str], metrics: dict[str, float], age_s: float, min_age_s: float) -> bool:
    """Whether a run is one ``mlflow run`` made and left RUNNING without this project starting."""
    return (
        status == "RUNNING"
        and tags.get(SOURCE_TYPE_TAG) == "PROJECT"
        and tags.get(ENTRY_POINT_TAG) in ENTRY_POINTS
        and KIND_TAG not in tags
        and not metrics
        and age_s >= min_age_s
    )


def find_stale_runs(min_age_minutes: float = DEFAULT_MIN_AGE_MINUTES, now_s: float | None = None) -> list[StaleRun]:
    """The stale runs of every active experiment of the tracking store, oldest first (one query
    for the RUNNING project runs, one per experiment holding a stale run for its name)."""
    now_s = time.time() if now_s is None else now_s
    client = mlflow.MlflowClient()
    try:
        running = mlflow.search_runs(
            search_all_experiments=True, output_format="list",
            filter_string=f"attributes.status = 'RUNNING' and tags.`{SOURCE_TYPE_TAG}` = 'PROJECT'",
        )
        stale = [run for run in running
                 if is_stale(run.info.status, run.data.tags, run.data.metrics, now_s - run.info.start_time / 1000, min_age_minutes * 60)]
        names = {experiment_id: client.get_experiment(experiment_id).name for experiment_id in {run.info.experiment_id for run in stale}}
    except MlflowException as error:
        raise tracking_error(error, f"could not search {mlflow.get_tracking_uri()} for stale runs", "check MLFLOW_TRACKING_URI") from None
    found = [
        StaleRun(run.info.run_id, run.info.run_name or "", names[run.info.experiment_id],
                 run.data.tags[ENTRY_POINT_TAG], now_s - run.info.start_time / 1000)
        for run in stale
    ]
    return sorted(found, key=lambda run: -run.age_s)


def close_stale_run(run: StaleRun) -> None:
    """Marks ``run`` FAILED, with the reason as a tag (what the UI shows), if still RUNNING."""
    client = mlflow.MlflowClient()
    try:
        if client.get_run(run.run_id).info.status != "RUNNING":
            return
        client.set_tag(run.run_id, CLOSED_STALE_TAG, CLOSED_REASON)
        client.set_terminated(run.run_id, CLOSED_STATUS)
    except MlflowException as error:
        raise tracking_error(error, f"could not close run {run.run_id}", "check MLFLOW_TRACKING_URI") from None


def stale_note(runs: list[StaleRun]) -> str:
    """One line for ``compare``: what the stale runs are and the command that closes them."""
    names = ", ".join(f"{run.run_name} ({run.experiment_name}, {_age(run.age_s)} old)" for run in runs[:3])
    more = f" and {len(runs) - 3} more" if len(runs) > 3 else ""
    return (f"note: {len(runs)} run(s) that `mlflow run` made are still RUNNING but this project never started in them "
            f"(e.g. no conda; `mlflow run . --env-manager uv` needs none): {names}{more}; "
            "close them with: edsr-mlflow runs clean --stale")


def _age(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"
