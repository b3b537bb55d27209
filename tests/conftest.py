"""Shared fixtures: a throw-away tracking store per test, tiny configurations, the shared images."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from helpers import ROOT, SERVED_ARTIFACTS, copy_migrated_store

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(items):
    """The end-to-end tests (marked slow) first, in their file order: run by several workers
    (`make test`), the suite then ends soon after its longest test instead of starting it last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def session_temp_folder(tmp_path_factory):
    """The temp folder of this worker and the processes it starts (TMPDIR), under pytest's base
    folder: what a library leaves there goes with the session (tmp_path_retention_policy).
    Tests that check a command leaves nothing set TMPDIR to an empty folder of their own."""
    import tempfile

    folder = tmp_path_factory.mktemp("tmpdir")
    previous = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(folder), str(folder)
    yield folder
    if previous[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous[0]
    tempfile.tempdir = previous[1]


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """An empty SQLite tracking store with MLflow's schema migrations run, made once per session:
    migrating costs seconds, copying the file a tenth of one."""
    import mlflow

    path = tmp_path_factory.mktemp("migrated-store") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_store(tmp_path, monkeypatch, migrated_store):
    """A fresh SQLite tracking store; the test runs in tmp_path (checkpoints, artifacts land there)."""
    monkeypatch.chdir(tmp_path)
    copy_migrated_store(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")  # runs here last seconds
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    import mlflow

    while mlflow.active_run():
        mlflow.end_run()
    return uri


@pytest.fixture
def project_checkpoints_removed(tracking_store):
    """`mlflow run <project>` runs its command in the project folder, so the runs it trains keep
    their checkpoints in ROOT/checkpoints/<run id>: those of this test's runs are removed when it
    ends (a parallel test's stay), and the folder too once empty (whoever made it)."""
    import mlflow

    folder = ROOT / "checkpoints"
    yield folder
    for run in mlflow.search_runs(search_all_experiments=True, output_format="list"):
        shutil.rmtree(folder / run.info.run_id, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty: a parallel test's runs, or the user's, are there
        folder.rmdir()


@pytest.fixture
def tiny_params():
    """A training run that takes seconds on a CPU: bundled sample photos, 1 block, 8 filters."""
    return dict(
        dataset="sample", blocks=1, filters=8, patch_size=16, batch_size=4,
        epochs=2, steps_per_epoch=3, learning_rate=1e-3, seed=1, precision="float32",
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def server_backend(request, tmp_path, migrated_store):
    """The backend store of a test tracking server: a SQLite file, or a fresh PostgreSQL database."""
    from servers import postgres_database

    if request.param == "sqlite":
        copy_migrated_store(migrated_store, tmp_path / "server.db", SERVED_ARTIFACTS)
        yield f"sqlite:///{tmp_path / 'server.db'}"
    else:
        with postgres_database() as uri:
            yield uri


@pytest.fixture
def mlflow_server(server_backend, tmp_path, monkeypatch):
    """A real `mlflow server` on 127.0.0.1 serving artifacts; MLFLOW_TRACKING_URI points at it."""
    from servers import start_mlflow_server, stop_mlflow_server

    server, uri = start_mlflow_server(server_backend, tmp_path / "artifacts", log_file=tmp_path / "server.log")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")  # runs here last seconds
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    try:
        yield uri
    finally:
        stop_mlflow_server(server)
