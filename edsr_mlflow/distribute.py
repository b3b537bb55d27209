"""Which devices and hosts train one model: TensorFlow's ``tf.distribute`` strategies by name.

- ``default``: one device (the first GPU, else the CPU).
- ``mirrored``: every local GPU of this machine (``MirroredStrategy``).
- ``multiworker``: several machines (``MultiWorkerMirroredStrategy``), each running the same
  command with its own ``TF_CONFIG``; the chief (``chief`` task, else worker 0) logs to MLflow.

``batch_size`` is always the global batch: with N replicas each computes the loss on
``batch_size / N`` patches and the gradients are averaged, so a run means the same, and takes the
same learning rate, whatever N is.
"""

from __future__ import annotations

import json
import os

from .config import check_strategy
from .errors import ConfigError


def cluster_task(tf_config: str | None = None) -> tuple[str, int, bool]:
    """(task type, task index, whether the cluster names a chief) from ``TF_CONFIG``
    (``$TF_CONFIG`` if None)."""
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw:
        raise ConfigError("strategy multiworker needs TF_CONFIG (the cluster's hosts and this host's task); see README")
    try:
        parsed = json.loads(raw)
        cluster, task = parsed["cluster"], parsed["task"]
        return str(task["type"]), int(task["index"]), "chief" in cluster
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"TF_CONFIG is not valid cluster JSON ({type(error).__name__}: {error}); see README") from None


def is_chief(strategy_name: str, tf_config: str | None = None) -> bool:
    """Whether this process logs to MLflow and saves the model: always, except for the
    non-chief workers of a multi-worker cluster."""
    if strategy_name != "multiworker":
        return True
    task_type, index, has_chief = cluster_task(tf_config)
    return task_type == "chief" or (task_type == "worker" and index == 0 and not has_chief)


def make_strategy(name: str):
    """The ``tf.distribute.Strategy`` called ``name``. Create it before any other TensorFlow op
    (a multi-worker strategy must be set up first)."""
    import tensorflow as tf

    check_strategy(name)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        cluster_task()  # a clear error instead of TensorFlow's when TF_CONFIG is missing
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def check_global_batch(batch_size: int, replicas: int) -> None:
    if batch_size % replicas:
        raise ConfigError(
            f"batch_size {batch_size} cannot be split evenly over {replicas} replicas; use a multiple of {replicas}"
        )
