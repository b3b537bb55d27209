"""The ``train`` command end to end against real tracking stores: what a run records, how it
fails, how it resumes. Tiny models on the bundled sample photos; seconds per run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edsr_mlflow import cli, model_logging, schema, training, workflows
from edsr_mlflow.config import TrainConfig
from edsr_mlflow.precision import choose_precision, cpu_flags

from helpers import ROOT, all_runs, assert_complete_training_run, cli_args
from servers import free_port


@pytest.mark.slow
def test_train_command_records_a_complete_run(tracking_store, tiny_params):
    params = {**tiny_params, "upsampler": "transpose", "scale": 3}
    result = CliRunner().invoke(cli.main, ["train", *cli_args(params)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run,) = all_runs()
    assert_complete_training_run(run, TrainConfig(**params))
    next_steps = result.output.split("next:\n", 1)[1]  # the commands that come next, runnable as printed
    assert f"upscale runs:/{run.info.run_id}/model photo.png photo_x3.png" in next_steps
    assert f"{Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri" in next_steps or ".venv/bin/mlflow ui" in next_steps
    assert (training.latest_checkpoint(Path("checkpoints") / run.info.run_id) / training.CHECKPOINT_FILE).exists()


def test_next_steps_run_the_package_as_a_module_where_its_script_is_missing(tmp_path, monkeypatch):
    """An environment `mlflow run --env-manager uv` builds has the dependencies, not this package."""
    python = tmp_path / "env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    (python.parent / "mlflow").touch()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "executable", str(python))
    assert cli._script("edsr-mlflow") == "env/bin/python -m edsr_mlflow"
    assert cli._script("mlflow") == "env/bin/mlflow"


def uv_usable(path: str) -> str:
    """Why `mlflow run --env-manager uv` cannot run here ("" if it can)."""
    import socket

    if shutil.which("uv", path=path) is None:
        return "uv is not installed (make setup installs it)"
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return "pypi.org is not reachable, so uv cannot build the environment"
    return ""


@pytest.mark.slow
def test_mlflow_run_of_the_project_as_the_readme_shows(tracking_store, project_checkpoints_removed, tmp_path):
    """The README's first training command, on a machine without conda: MLflow builds a
    virtualenv from conda.yaml's pip list with uv (from PyPI) and trains in it, this environment
    unused. Where uv cannot run, the same command in this environment (--env-manager local).
    The environment (2.7 GB, TensorFlow included) is removed when the test ends, passed or not."""
    try:
        run_the_project_as_the_readme_shows(tmp_path)
    finally:
        shutil.rmtree(tmp_path / "envs", ignore_errors=True)


def run_the_project_as_the_readme_shows(tmp_path):
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    if why_not := uv_usable(path):
        print(f"--env-manager local: {why_not}")
    env_manager = "local" if why_not else "uv"
    env = {**os.environ, "PATH": path, "MLFLOW_ENV_ROOT": str(tmp_path / "envs")}
    command = [
        sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", env_manager,
        "-P", "upsampler=transpose", "-P", "blocks=8", "-P", "dataset=sample", "-P", "epochs=2",
        "-P", "steps_per_epoch=3", "-P", "filters=8", "-P", "patch_size=16", "-P", "batch_size=4",
    ]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = all_runs()
    config = TrainConfig(upsampler="transpose", blocks=8, dataset="sample", epochs=2, steps_per_epoch=3, filters=8, patch_size=16, batch_size=4)
    assert_complete_training_run(run, config)
    # precision=auto, the default: what it meant on this machine is logged and printed
    expected = choose_precision("auto", gpu_capability=None, flags=cpu_flags())
    assert run.data.params["precision"] == "auto"
    assert run.data.tags[schema.PRECISION_USED_TAG] == expected.policy
    assert run.data.tags[schema.PRECISION_REASON_TAG] == expected.reason
    assert run.data.tags[schema.XLA_TAG] == str(expected.xla)
    assert f"precision {expected.policy}" in done.stdout
    assert "cuInit" not in done.stderr and "oneDNN supports" not in done.stderr
    if env_manager == "uv":
        assert run.data.tags["mlflow.project.env"] == "uv"
        (python,) = (tmp_path / "envs").glob("mlflow-*/bin/python")
        # The next steps name that environment's Python (from the project folder, where MLflow
        # runs the command), which has no edsr-mlflow script: the package runs as a module.
        (compare,) = [line.split()[1:] for line in done.stdout.splitlines() if line.strip().startswith("compare:")]
        assert compare[1:4] == ["-m", "edsr_mlflow", "compare"], compare
        assert (ROOT / compare[0]).resolve() == python.resolve(), compare


# Refused by TrainConfig or the memory check: before anything touches the tracking store.
BAD_CONFIGURATIONS = [
    (["--upsampler=pixelshuffle"], "pixelshuffle"),
    (["--scale=5"], "unsupported scale 5"),
    (["--blocks=0"], "blocks must be a positive number"),
    (["--time-budget-s=nan"], "time_budget_s must be a finite number"),
    (["--blocks=1e12"], "GiB to train"),
    (["--icnr=true", "--upsampler=nearest"], "icnr applies to upsampler subpixel only"),
]
# Refused after the store is checked, before any run is created (local sources before
# TensorFlow loads: test_bad_local_data_is_told_before_tensorflow_loads).
BAD_DATA = [
    (["--dataset=/no/such/folder"], "does not exist"),
    (["--dataset=sample", "--patch-size=1000"], "too small"),
    (["--dataset=div2k"], "DIV2K"),
    ([f"--dataset={__file__}"], "is a file, not a folder"),
]


def train_with(args: list[str], tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr("edsr_mlflow.data._can_reach", lambda host, port: False)
    return CliRunner().invoke(cli.main, ["train", "--epochs=1", "--steps-per-epoch=1", "--blocks=1", "--filters=8", *args])


def assert_one_error_line(result, message: str) -> None:
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(error_lines) == 1, result.output


@pytest.mark.parametrize("args, message", BAD_CONFIGURATIONS)
def test_a_bad_configuration_gives_one_line_before_the_store_is_touched(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert_one_error_line(train_with(args, tmp_path, monkeypatch), message)
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("args, message", BAD_DATA)
def test_bad_data_gives_one_line_and_leaves_no_run(tracking_store, tmp_path, monkeypatch, args, message):
    assert_one_error_line(train_with(args, tmp_path, monkeypatch), message)
    assert all_runs() == []


def test_bad_local_data_is_told_before_tensorflow_loads(tracking_store):
    """A missing folder, or images too small for the patch: one line in a second, from the
    file listing and the image headers, not after TensorFlow's import (seconds)."""
    probe = ("import json, sys; from click.testing import CliRunner; from edsr_mlflow import cli; "
             "told = [CliRunner().invoke(cli.main, ['train', *args]) for args in "
             "(['--dataset=/no/such/folder'], ['--dataset=sample', '--patch-size=1000', '--blocks=1', '--filters=8', '--batch-size=1'])]; "
             "print(json.dumps([[r.exit_code, r.output] for r in told] + ['tensorflow' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    (missing_code, missing), (too_small_code, too_small), tensorflow_loaded = json.loads(done.stdout)
    assert missing_code == too_small_code == 2
    assert missing.startswith("error: dataset directory /no/such/folder does not exist") and missing.count("\n") == 1
    assert "is too small for 1000px LR patches at x2" in too_small and too_small.count("\n") == 1
    assert tensorflow_loaded is False
    assert all_runs() == []


def test_unreachable_tracking_server_fails_without_mlflows_minutes_of_retries(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody listens there
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli.main, ["train", "--dataset=sample"])
    assert result.exit_code == 3
    assert result.output.startswith("error: cannot reach the MLflow tracking server")
    assert len(result.output.strip().splitlines()) == 1
    # The command capped MLflow's retries (its default backs off for minutes).
    assert int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 5


@pytest.mark.slow
@pytest.mark.parametrize("raised, status", [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_a_crashed_run_is_never_left_running(tracking_store, tiny_params, monkeypatch, raised, status):
    def crash(*args, **kwargs):
        raise raised

    monkeypatch.setattr(training, "train", crash)
    expected = workflows.TrainingInterrupted if isinstance(raised, KeyboardInterrupt) else type(raised)
    with pytest.raises(expected) as error:
        workflows.train_run(TrainConfig(**tiny_params))
    (run,) = all_runs()
    assert run.info.status == status
    if status == "KILLED":  # which run, and no epoch finished: nothing to resume
        assert str(error.value) == f"run {run.info.run_id} is marked KILLED; no epoch had finished, so there is nothing to resume: start a new run"
    assert run.data.params["blocks"] == str(tiny_params["blocks"])  # logged before the crash


@pytest.mark.slow
def test_resume_after_a_crash_logs_each_epoch_exactly_once(tracking_store, tiny_params, monkeypatch):
    config = TrainConfig(**{**tiny_params, "epochs": 3})
    original = model_logging.EpochLogger.on_epoch_end

    def crash_after_checkpoint_of_epoch_2(self, epoch, logs=None):
        if epoch == 1:  # the checkpoint of epoch 2 is written, its metrics are not logged yet
            raise RuntimeError("power cut")
        original(self, epoch, logs)

    monkeypatch.setattr(model_logging.EpochLogger, "on_epoch_end", crash_after_checkpoint_of_epoch_2)
    with pytest.raises(RuntimeError):
        workflows.train_run(config)
    (crashed,) = all_runs()
    assert crashed.info.status == "FAILED"
    monkeypatch.setattr(model_logging.EpochLogger, "on_epoch_end", original)

    result = CliRunner().invoke(cli.main, ["train", f"--resume={crashed.info.run_id}"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"run {crashed.info.run_id} ({config.run_name})" in result.output  # the run's own name, not the CLI defaults'
    (run,) = all_runs()
    assert run.info.run_id == crashed.info.run_id
    assert_complete_training_run(run, config)


@pytest.mark.slow
def test_a_run_lands_on_a_real_tracking_server(mlflow_server, tmp_path, monkeypatch, tiny_params):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    result = CliRunner().invoke(cli.main, ["train", *cli_args(tiny_params)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run,) = all_runs()
    assert_complete_training_run(run, TrainConfig(**tiny_params))
