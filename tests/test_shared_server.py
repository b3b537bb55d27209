"""A team's tracking server: parallel sweeps lose nothing (SQLite file and PostgreSQL-backed
server), train/evaluate/compare work over HTTP with results readable by another process, and a
server with basic authentication turns away a client without credentials in one line.

PostgreSQL cases need EDSR_TEST_POSTGRES_URI (CI starts PostgreSQL and sets it); without it they
skip and say so.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from edsr_mlflow import schema, tracking
from edsr_mlflow.config import TrainConfig
from edsr_mlflow.errors import TrackingError

from helpers import SERVED_ARTIFACTS, assert_complete_training_run, cli_args, copy_migrated_store, write_images
from servers import postgres_database, start_mlflow_server, stop_mlflow_server

UPSAMPLERS = ["subpixel", "transpose", "nearest", "bilinear"]


def edsr_mlflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Runs the command line in a new process, as another user of the server would."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    return subprocess.run([sys.executable, "-m", "edsr_mlflow", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


@pytest.fixture(params=["sqlite-file", "postgresql-server"])
def parallel_store(request, tmp_path, monkeypatch, migrated_store):
    """Where a parallel sweep logs: a SQLite file written by every process directly, or an
    `mlflow server` over PostgreSQL."""
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    if request.param == "sqlite-file":
        copy_migrated_store(migrated_store, tmp_path / "mlflow.db")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
        yield
        return
    with postgres_database() as backend:
        server, uri = start_mlflow_server(backend, tmp_path / "artifacts", log_file=tmp_path / "server.log")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        try:
            yield
        finally:
            stop_mlflow_server(server)


@pytest.mark.slow
def test_a_parallel_sweep_loses_no_run_and_no_metric(parallel_store, tmp_path):
    epochs = 3
    grid = tmp_path / "parallel.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "parallel", "experiment": "parallel-sweep",
        "grid": {"upsampler": UPSAMPLERS},
        "fixed": {"dataset": "sample", "blocks": 1, "filters": 8, "patch_size": 16, "batch_size": 4,
                  "epochs": epochs, "steps_per_epoch": 2},
    }))
    done = edsr_mlflow("sweep", f"--grid={grid}", "--max-parallel=4", "--output-dir=out", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "4 trained, 0 already finished, 0 failed" in done.stdout

    runs = mlflow.search_runs(experiment_names=["parallel-sweep"], output_format="list")
    children = [r for r in runs if r.data.tags.get(schema.KIND_TAG) == "train"]
    assert sorted(r.data.params["upsampler"] for r in children) == sorted(UPSAMPLERS)
    assert all(r.info.status == "FINISHED" for r in runs)
    client = mlflow.MlflowClient()
    expected = len(UPSAMPLERS) * len(schema.EPOCH_METRICS) * epochs
    found = sum(len(client.get_metric_history(r.info.run_id, name)) for r in children for name in schema.EPOCH_METRICS)
    assert found == expected


@pytest.mark.slow
@pytest.mark.parametrize("server_backend", ["postgresql"], indirect=True)
def test_train_evaluate_compare_over_http_on_postgresql(mlflow_server, tmp_path, tiny_params):
    trained = edsr_mlflow("train", "--experiment=team", *cli_args(tiny_params), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = mlflow.search_runs(experiment_names=["team"], output_format="list")
    photos = write_images(tmp_path / "photos", count=2, size=40)
    evaluated = edsr_mlflow("evaluate", f"--model=runs:/{run.info.run_id}/model", f"--dataset={photos}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    compared = edsr_mlflow("compare", "--experiment=team", "--output-dir=comparison", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr[-3000:]

    # Everything is read back here, in another process than the ones that wrote it.
    run = mlflow.get_run(run.info.run_id)
    assert_complete_training_run(run, TrainConfig(**tiny_params))  # params, metrics, samples, model
    assert run.data.metrics["eval_photos_psnr"] > 0
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "eval")] == ["eval/photos_x2.csv"]
    comparisons = [r for r in mlflow.search_runs(experiment_names=["team"], output_format="list")
                   if r.data.tags.get(schema.KIND_TAG) == "comparison"]
    assert len(comparisons) == 1
    local = mlflow.artifacts.download_artifacts(run_id=comparisons[0].info.run_id, dst_path=str(tmp_path / "got"))
    assert (Path(local) / "findings.csv").read_text().count("\n") == 2  # header + one configuration


@pytest.mark.slow
def test_basic_auth_server_refuses_a_client_without_credentials(tmp_path, monkeypatch, migrated_store):
    config = configparser.ConfigParser()
    config["mlflow"] = {
        "default_permission": "READ",
        "database_uri": f"sqlite:///{tmp_path / 'users.db'}",
        "admin_username": "admin",
        "admin_password": "a-test-admin-password",
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    with open(tmp_path / "auth.ini", "w") as ini:
        config.write(ini)
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth.ini"), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-key"}
    copy_migrated_store(migrated_store, tmp_path / "server.db", SERVED_ARTIFACTS)
    server, uri = start_mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts",
                                      extra_args=("--app-name", "basic-auth"), env=env, log_file=tmp_path / "server.log")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    try:
        refused = edsr_mlflow("train", "--dataset=sample", cwd=tmp_path)
        assert refused.returncode == 3
        assert refused.stderr.strip() == (f"error: the MLflow tracking server at {uri} refused access (HTTP 401); "
                                          "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
        # A password check costs the server a deliberately slow hash: no 5 s limit on a busy machine.
        with pytest.raises(TrackingError, match="refused access .*check MLFLOW_TRACKING_USERNAME"):
            tracking.check_tracking_server(timeout_s=120)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "a-test-admin-password")
        assert tracking.check_tracking_server(timeout_s=120) == uri
    finally:
        stop_mlflow_server(server)


def test_a_lost_dataset_insert_race_is_retried(tracking_store, monkeypatch):
    """What --max-parallel 4 on one SQLite file hit: two runs creating the same dataset row."""
    from edsr_mlflow.images import DatasetInfo

    calls = []
    original = mlflow.log_input

    def racing_log_input(dataset, context=None, **kwargs):
        calls.append(context)
        if len(calls) == 1:
            raise mlflow.exceptions.MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest")
        return original(dataset, context=context, **kwargs)

    monkeypatch.setattr(mlflow, "log_input", racing_log_input)
    info = DatasetInfo(name="photos", source=str(Path.cwd()), digest="abc123", num_images=1, image_names=("a.png",))
    val_info = DatasetInfo(name="benchmark", source=str(Path.cwd()), digest="def456", num_images=1, image_names=("b.png",))
    with mlflow.start_run() as run:
        tracking.log_datasets(info, val_info)
    assert calls == ["training", "training", "validation"]
    contexts = sorted(i.tags[0].value for i in mlflow.get_run(run.info.run_id).inputs.dataset_inputs)
    assert contexts == ["training", "validation"]

    def broken(dataset, context=None, **kwargs):
        raise mlflow.exceptions.MlflowException("some other failure")

    monkeypatch.setattr(mlflow, "log_input", broken)
    with mlflow.start_run(), pytest.raises(mlflow.exceptions.MlflowException, match="some other failure"):
        tracking.log_datasets(info, val_info)


FAKE_POSTGRES_TOOLS = {
    # A stopped cluster whose tools talk on stdout, as pg_ctlcluster does after an unclean shutdown.
    "pg_lsclusters": 'echo "15 main 5432 down postgres /data /log"',
    "pg_ctlcluster": 'echo "Removed stale pid file."',
    "psql": 'echo 1',
    "createdb": 'echo "createdb: created"',
    "su": 'shift 2; exec sh -c "$1"',  # su postgres -c CMD
    "sudo": '[ "$1" = -u ] && shift 2; exec "$@"',  # sudo [-u postgres] CMD...
}


SERVER_SCRIPT = Path(__file__).parents[1] / "scripts" / "tracking_server.sh"


def fake_tools(tmp_path, tools: dict[str, str]) -> dict[str, str]:
    """An environment whose PATH finds ``tools`` (name -> sh body) first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "EDSR_SERVER_DIR": str(tmp_path / "server")}


def test_the_postgres_script_prints_only_the_uri_on_stdout(tmp_path):
    """CI and the README capture `$(scripts/tracking_server.sh postgres)`: anything else on stdout
    (here pg_ctlcluster's "Removed stale pid file.") would corrupt the URI."""
    env = {**fake_tools(tmp_path, FAKE_POSTGRES_TOOLS), "EDSR_PG_PASSWORD": "secret"}
    result = subprocess.run([str(SERVER_SCRIPT), "postgres"], env=env, capture_output=True, text=True, check=True)
    assert result.stdout == "postgresql://mlflow:secret@127.0.0.1:5432/mlflow\n"
    assert "Removed stale pid file." in result.stderr


def test_the_server_script_keeps_its_secrets_to_its_owner(tmp_path):
    """Issue 10: basic_auth.ini was 0644 with the admin password and the database URI in clear,
    the database password was on `mlflow server`'s command line (`ps`), artifacts 0755."""
    record = tmp_path / "mlflow_argv"
    tools = {
        **FAKE_POSTGRES_TOOLS,
        # psql gets the password on stdin, never in its arguments: record both.
        "psql": f'echo "$@" >> {tmp_path}/psql_argv; cat >> {tmp_path}/psql_stdin; echo 1',
        "mlflow": f'echo "$@" > {record}; echo "PGPASSFILE=$PGPASSFILE" >> {record}; exec sleep 60',
        "curl": "exit 0",
    }
    env = {**fake_tools(tmp_path, tools), "EDSR_AUTH": "1", "EDSR_ADMIN_PASSWORD": "admin-pw-123"}
    server = tmp_path / "server"
    server.mkdir(mode=0o755)  # as an older version left it
    try:
        result = subprocess.run([str(SERVER_SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        for _ in range(50):
            if record.exists() and "PGPASSFILE" in record.read_text():
                break
            time.sleep(0.1)
        password = (server / "pg_password").read_text()
        assert len(password) >= 32
        modes = {path.name: path.stat().st_mode & 0o777 for path in server.iterdir()}
        assert modes["basic_auth.ini"] == modes["secret_key"] == modes["pg_password"] == modes["pgpass"] == 0o600, modes
        assert modes["artifacts"] == 0o700 and server.stat().st_mode & 0o777 == 0o700, modes
        assert all(mode & 0o077 == 0 for mode in modes.values()), modes
        argv, pgpass_line = record.read_text().splitlines()
        assert password not in argv and "--backend-store-uri postgresql://mlflow@127.0.0.1:5432/mlflow" in argv
        assert pgpass_line == f"PGPASSFILE={server / 'pgpass'}"
        assert (server / "pgpass").read_text() == f"127.0.0.1:5432:*:mlflow:{password}\n"
        assert password not in (server / "basic_auth.ini").read_text()
        assert password not in (tmp_path / "psql_argv").read_text()
        assert f"PASSWORD '{password}'" in (tmp_path / "psql_stdin").read_text()
    finally:
        subprocess.run([str(SERVER_SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=30)
