"""Distributed training with tf.distribute: strategy choice, who logs, and two real CPU workers
on 127.0.0.1 training one model in step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from click.testing import CliRunner

from edsr_mlflow import cli, distribute, training
from edsr_mlflow.config import TrainConfig
from edsr_mlflow.errors import ConfigError

from helpers import assert_complete_training_run, cli_args
from servers import free_port


def tf_config(task_type: str, index: int, cluster: dict) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


WORKERS = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}


@pytest.mark.parametrize(
    "strategy, config, chief",
    [
        ("default", None, True),
        ("mirrored", None, True),
        ("multiworker", tf_config("worker", 0, WORKERS), True),
        ("multiworker", tf_config("worker", 1, WORKERS), False),
        ("multiworker", tf_config("chief", 0, {"chief": ["h:1"], "worker": ["h:2"]}), True),
        ("multiworker", tf_config("worker", 0, {"chief": ["h:1"], "worker": ["h:2"]}), False),
    ],
)
def test_only_the_chief_logs(strategy, config, chief):
    assert distribute.is_chief(strategy, config) is chief


@pytest.mark.parametrize("config, message", [("", "needs TF_CONFIG"), ("{not json", "not valid cluster JSON"), ('{"cluster": {}}', "not valid")])
def test_bad_tf_config_is_a_clear_error(config, message):
    with pytest.raises(ConfigError, match=message):
        distribute.cluster_task(config)


def test_strategy_choices_are_validated():
    with pytest.raises(ConfigError, match="unknown strategy 'horovod'; choose one of default, mirrored, multiworker"):
        TrainConfig(strategy="horovod")
    with pytest.raises(ConfigError, match="time_budget_s cannot be used with strategy multiworker"):
        TrainConfig(strategy="multiworker", time_budget_s=60)
    with pytest.raises(ConfigError, match="batch_size 6 cannot be split evenly over 4 replicas"):
        distribute.check_global_batch(6, 4)
    distribute.check_global_batch(8, 4)


@pytest.mark.slow
def test_mirrored_strategy_run(tracking_store, tiny_params):
    """On a CPU-only machine MirroredStrategy has one replica; the code path is the multi-GPU one."""
    params = {**tiny_params, "strategy": "mirrored"}
    result = CliRunner().invoke(cli.main, ["train", *cli_args(params)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert_complete_training_run(run, TrainConfig(**params))
    assert run.data.tags["replicas"] == "1"


def checkpoint_weights(path: Path) -> list[np.ndarray]:
    return keras.models.load_model(training.latest_checkpoint(path) / training.CHECKPOINT_FILE, safe_mode=True).get_weights()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_cpu_workers_train_one_model(tracking_store, tmp_path, tiny_params):
    params = {**tiny_params, "strategy": "multiworker", "epochs": 2, "steps_per_epoch": 4}
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": tf_config("worker", index, cluster), "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.5"}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "edsr_mlflow", "train", *cli_args(params)], cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
        ))
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n----\n".join(o[-3000:] for o in outputs)
    assert "worker done" in outputs[1]

    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")  # the chief's alone
    assert_complete_training_run(run, TrainConfig(**params))
    assert run.data.tags["replicas"] == "2"
    assert [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "train_loss")] == [1, 2]

    chief = checkpoint_weights(tmp_path / "checkpoints" / run.info.run_id)
    other = checkpoint_weights(tmp_path / "checkpoints" / "worker-1")
    initial = training.build_model(TrainConfig(**params)).get_weights()
    assert len(chief) == len(other)
    assert all(np.array_equal(a, b) for a, b in zip(chief, other)), "workers' weights differ"
    assert not all(np.array_equal(a, b) for a, b in zip(chief, initial)), "no training happened"
