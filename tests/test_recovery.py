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

from edsr_mlflow import schema, training

from helpers import SERVED_ARTIFACTS, cli_args, copy_migrated_store, one_error_line
from servers import start_mlflow_server, stop_mlflow_server

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
    runs = [folder for folder in (cwd / "checkpoints").glob("*") if training.latest_checkpoint(folder)]
    return json.loads((training.latest_checkpoint(runs[0]) / training.STATE_FILE).read_text())["epoch"] if runs else 0


def epoch_steps(run_id: str) -> dict[str, list[int]]:
    client = mlflow.MlflowClient()
    return {name: sorted(m.step for m in client.get_metric_history(run_id, name)) for name in schema.EPOCH_METRICS}


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
def test_tracking_server_lost_mid_run_then_resume(tmp_path, monkeypatch, migrated_store):
    copy_migrated_store(migrated_store, tmp_path / "server.db", SERVED_ARTIFACTS)
    backend, artifacts = f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts"
    server, uri = start_mlflow_server(backend, artifacts, log_file=tmp_path / "server.log")
    port = uri.rsplit(":", 1)[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # Fewer retries than the CLI's default (about 30 s) keep the test short; the path is the same.
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    try:
        process = start_training(cli_args(SLOW_EPOCHS), tmp_path, env)
        # Watched on disk, then asked of the server once: polling the server would slow it and training.
        wait_until(lambda: checkpointed_epoch(tmp_path) >= 1, "the first checkpoint", process)
        run_id = checkpointed_run_id(tmp_path)
        wait_until(lambda: epoch_1_logged(run_id), "epoch 1 on the server", process)
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


def checkpointed_run_id(cwd: Path) -> str:
    (folder,) = (cwd / "checkpoints").glob("*")  # checkpoints/<run id>/
    return folder.name


def epoch_1_logged(run_id: str) -> bool:
    time.sleep(0.5)  # the checkpoint comes just before the epoch's metrics
    return bool(mlflow.MlflowClient().get_metric_history(run_id, "val_psnr"))


# ---------------------------------------------------------------- refusing to resume, changing nothing


def resume(run_id: str, *extra: str):
    from click.testing import CliRunner

    from edsr_mlflow import cli

    return CliRunner().invoke(cli.main, ["train", f"--resume={run_id}", *extra])


@pytest.fixture
def finished_run(tracking_store, tiny_params):
    from edsr_mlflow import workflows
    from edsr_mlflow.config import TrainConfig

    return workflows.train_run(TrainConfig(**tiny_params)).run_id


def test_resuming_a_finished_run_is_refused_and_changes_nothing(finished_run, tmp_path):
    before = mlflow.get_run(finished_run)
    for extra in ((), ("--checkpoint-dir", str(tmp_path / "wrong"))):
        one_error_line(resume(finished_run, *extra), f"run {finished_run} already FINISHED", exit_code=2)
    after = mlflow.get_run(finished_run)
    assert after.info.status == "FINISHED" and after.info.end_time == before.info.end_time
    assert epoch_steps(finished_run) == {name: [1, 2] for name in schema.EPOCH_METRICS}
    assert len(mlflow.MlflowClient().get_metric_history(finished_run, "val_psnr_gain")) == 1


def unfinished_run(status: str, params: dict) -> str:
    from edsr_mlflow.config import TrainConfig

    client = mlflow.MlflowClient()
    run_id = client.create_run("0").info.run_id
    for name, value in TrainConfig(**params).as_params().items():
        client.log_param(run_id, name, value)
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


@pytest.mark.parametrize("status", ["KILLED", "FAILED", "RUNNING"])
def test_a_refused_resume_leaves_the_status_as_it_was(status, tracking_store, tiny_params):
    run_id = unfinished_run(status, tiny_params)
    one_error_line(resume(run_id), "no checkpoint", "start a new run", exit_code=2)
    assert mlflow.get_run(run_id).info.status == status


def test_a_damaged_checkpoint_is_one_line_and_changes_nothing(finished_run, tiny_params):
    source = training.latest_checkpoint(Path("checkpoints") / finished_run)
    for damage, fragment in (("state", "state.json is unreadable"), ("model", "model.keras is unreadable")):
        run_id = unfinished_run("KILLED", tiny_params)
        target = Path("checkpoints") / run_id / source.name
        target.parent.mkdir(parents=True)
        import shutil

        shutil.copytree(source, target)
        if damage == "state":
            (target / training.STATE_FILE).write_text('{"epoch": 2, "train_')
        else:
            data = (target / training.CHECKPOINT_FILE).read_bytes()
            (target / training.CHECKPOINT_FILE).write_bytes(data[: len(data) // 2])
        one_error_line(resume(run_id), fragment, exit_code=2)
        assert mlflow.get_run(run_id).info.status == "KILLED"


def test_a_second_process_on_the_same_run_is_refused(finished_run, tiny_params):
    import shutil

    run_id = unfinished_run("RUNNING", tiny_params)  # as a kill -9 leaves it, or as one in progress shows it
    source = training.latest_checkpoint(Path("checkpoints") / finished_run)
    shutil.copytree(source, Path("checkpoints") / run_id / source.name)
    with training.checkpoint_lock(Path("checkpoints") / run_id, run_id):  # another process training it
        one_error_line(resume(run_id), f"run {run_id} is being trained right now by pid {os.getpid()}", exit_code=2)
    assert mlflow.get_run(run_id).info.status == "RUNNING"
    assert epoch_steps(run_id)["val_psnr"] == []


def test_a_kill_while_checkpointing_leaves_a_consistent_pair(tmp_path, monkeypatch):
    import keras
    import numpy as np

    from edsr_mlflow import model

    net = model.build_edsr(scale=2, blocks=1, filters=4)
    training.save_checkpoint(net, training.TrainState(epoch=1, history=[{"val_psnr": 1.0}]), tmp_path)
    first_weights = [w.copy() for w in net.get_weights()]
    net.set_weights([w + 1 for w in first_weights])

    def killed(*args, **kwargs):
        raise SystemExit("killed between writing epoch 2 and switching to it")

    monkeypatch.setattr(training.os, "replace", killed)
    with pytest.raises(SystemExit):
        training.save_checkpoint(net, training.TrainState(epoch=2, history=[{"val_psnr": 1.0}, {"val_psnr": 2.0}]), tmp_path)
    monkeypatch.undo()
    loaded, state = training.load_checkpoint(tmp_path)
    assert state.epoch == 1 and len(state.history) == 1
    for got, expected in zip(loaded.get_weights(), first_weights):
        np.testing.assert_array_equal(got, expected)
    assert isinstance(loaded, keras.Model)

    training.save_checkpoint(net, training.TrainState(epoch=2, history=[{"val_psnr": 1.0}, {"val_psnr": 2.0}]), tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["epoch-00002"]
    assert training.load_checkpoint(tmp_path)[1].epoch == 2
