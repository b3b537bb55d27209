"""Nothing is lost when a training process is killed outright or its tracking server goes away:
the run resumes from its last checkpoint and its metric history holds every epoch exactly once.

Training runs here as a separate process, as a user starts it, so it can be killed for real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from edsr_mlflow import tracking, training
from servers import start_mlflow_server, stop_mlflow_server
from test_train_command import cli_args

# Epochs long enough (a few seconds each) to kill a process in the middle of one.
SLOW_EPOCHS = dict(dataset="sample", blocks=1, filters=8, patch_size=16, batch_size=4,
                   epochs=3, steps_per_epoch=300, learning_rate=1e-3, seed=1)


def start_training(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edsr_mlflow", "train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def wait_until(condition, what: str, process: subprocess.Popen | None = None, limit_s: float = 600):
    """Polls ``condition``; a guard against a hung test, not a speed check."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"training exited ({process.returncode}) before {what}: {err[-2000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def checkpointed_epoch(cwd: Path) -> int:
    states = list((cwd / "checkpoints").glob(f"*/{training.STATE_FILE}"))
    return json.loads(states[0].read_text())["epoch"] if states else 0


def epoch_steps(run_id: str) -> dict[str, list[int]]:
    client = mlflow.MlflowClient()
    return {name: sorted(m.step for m in client.get_metric_history(run_id, name)) for name in tracking.EPOCH_METRICS}


def the_run() -> mlflow.entities.Run:
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return run


def assert_resumed_completely(run_id: str, epochs: int):
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert all(steps == list(range(1, epochs + 1)) for steps in epoch_steps(run_id).values()), epoch_steps(run_id)
    assert run.data.metrics["epochs_completed"] == epochs
    assert mlflow.keras.load_model(f"runs:/{run_id}/model").count_params() > 0  # the final model is logged


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tracking_store, tmp_path):
    env = {**os.environ}
    process = start_training(cli_args(SLOW_EPOCHS), tmp_path, env)
    wait_until(lambda: checkpointed_epoch(tmp_path) >= 1, "the first checkpoint", process)
    time.sleep(0.5)  # into epoch 2
    assert checkpointed_epoch(tmp_path) == 1, "epoch 2 ended before the kill; lengthen SLOW_EPOCHS"
    process.send_signal(signal.SIGKILL)
    process.wait()

    killed = the_run()
    assert killed.info.status == "RUNNING"  # SIGKILL leaves no chance to close it
    assert epoch_steps(killed.info.run_id)["val_psnr"] == [1]

    resumed = start_training([f"--resume={killed.info.run_id}"], tmp_path, env)
    out, err = resumed.communicate()
    assert resumed.returncode == 0, err[-3000:]
    assert_resumed_completely(killed.info.run_id, SLOW_EPOCHS["epochs"])


@pytest.mark.slow
def test_tracking_server_lost_mid_run_then_resume(tmp_path, monkeypatch):
    backend, artifacts = f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts"
    server, uri = start_mlflow_server(backend, artifacts, log_file=tmp_path / "server.log")
    port = uri.rsplit(":", 1)[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # Fewer retries than the CLI's default (about 30 s) keep the test short; the path is the same.
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    try:
        process = start_training(cli_args(SLOW_EPOCHS), tmp_path, env)
        run_id = wait_until(lambda: the_logged_run_with_epoch_1(), "epoch 1 on the server", process)
    finally:
        stop_mlflow_server(server)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 3, err[-3000:]
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith(f"error: lost the MLflow tracking server at {uri} during run {run_id}")
    assert f"--resume {run_id}" in last_line
    assert checkpointed_epoch(tmp_path) >= 1  # training itself is kept

    server, uri = start_mlflow_server(backend, artifacts, port=int(port), log_file=tmp_path / "server.log")
    try:
        resumed = start_training([f"--resume={run_id}"], tmp_path, env)
        out, err = resumed.communicate()
        assert resumed.returncode == 0, err[-3000:]
        assert_resumed_completely(run_id, SLOW_EPOCHS["epochs"])
    finally:
        stop_mlflow_server(server)


def the_logged_run_with_epoch_1() -> str | None:
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    if runs and epoch_steps(runs[0].info.run_id)["val_psnr"]:
        return runs[0].info.run_id
    return None
