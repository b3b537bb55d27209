"""Running a study grid: each configuration as a child run of one parent run, in its own
process, resumable. The grid itself is parsed by :mod:`grid`.

No TensorFlow here: the children train and evaluate; this process only creates their runs,
starts them, and closes what a dead child left open.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from . import grid, run_store, schema, tracking
from .config import TrainConfig
from .errors import UserError


@dataclass(frozen=True)
class ConfigOutcome:
    config: TrainConfig
    status: str  # "skipped" (finished earlier), "finished", "failed", "interrupted"
    run_id: str | None
    log_file: Path | None
    message: str = ""


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


class _Children:
    """The processes a sweep started. On Ctrl-C (or SIGTERM) the sweep stops starting new ones and
    passes SIGTERM to those running, which end their runs KILLED."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self.stopping = threading.Event()

    def run(self, command: list[str], log_file: Path, env: dict[str, str]) -> int | None:
        """Runs ``command`` with output appended to ``log_file``; None if the sweep is stopping."""
        with log_file.open("a") as log_stream, self._lock:
            if self.stopping.is_set():
                return None
            log_stream.write("$ " + " ".join(command) + "\n")
            log_stream.flush()
            # A session of its own: a Ctrl-C at the terminal reaches the sweep alone, which
            # stops each child once, with SIGTERM.
            process = subprocess.Popen(command, stdout=log_stream, stderr=subprocess.STDOUT, env=env,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
            self._running.add(process)
        try:
            return process.wait()
        finally:
            with self._lock:
                self._running.discard(process)

    def stop(self) -> None:
        with self._lock:
            self.stopping.set()
            running = list(self._running)
        for process in running:
            process.terminate()
        for process in running:
            process.wait()


def _train_and_evaluate(config: TrainConfig, index: int, parent_run_id: str, experiment_id: str, log_dir: Path,
                        env: dict[str, str], checkpoint_root: Path, evaluate: tuple[str, ...], benchmark_root: str | None,
                        children: _Children, run_id: str | None = None) -> ConfigOutcome:
    """One configuration in its own process, so a crash or leak cannot touch the others.

    The child run is created here and handed to the process (``MLFLOW_RUN_ID``), so its id never
    has to be read back from output; the same process then evaluates the logged model. With
    ``run_id`` (a FINISHED run missing its evaluation) only the evaluation runs.
    """
    log_file = log_dir / f"{index:03d}_{config.run_name}_s{config.seed}.log"
    datasets, benchmarks = ",".join(evaluate), f"--benchmark-root={benchmark_root or ''}"
    if run_id is None:
        run_id = tracking.create_child_run(experiment_id, parent_run_id, config.run_name)
        train_command = [sys.executable, "-m", "edsr_mlflow", "train", *grid.train_arguments(config),
                         f"--parent-run-id={parent_run_id}", f"--checkpoint-dir={checkpoint_root}"]
        if evaluate:  # in the same process: one TensorFlow start-up per configuration
            train_command += [f"--then-evaluate={datasets}", benchmarks]
        code = children.run(train_command, log_file, {**env, "MLFLOW_RUN_ID": run_id})
        status = tracking.close_if_running(run_id, "KILLED" if children.stopping.is_set() else "FAILED")
        if code is None or children.stopping.is_set():
            return ConfigOutcome(config, "interrupted", run_id, log_file, f"stopped; run {run_id} is {status}")
        if status != "FINISHED":
            return ConfigOutcome(config, "failed", run_id, log_file, _last_line(log_file))
        if code != 0:  # trained and logged; its evaluation failed (the next sweep runs only that)
            return ConfigOutcome(config, "failed", run_id, log_file, "evaluation failed: " + _last_line(log_file))
        return ConfigOutcome(config, "finished", run_id, log_file)
    if evaluate:
        eval_command = [sys.executable, "-m", "edsr_mlflow", "evaluate", f"--model=runs:/{run_id}/model", f"--dataset={datasets}", benchmarks]
        code = children.run(eval_command, log_file, env)
        if code is None or children.stopping.is_set():
            return ConfigOutcome(config, "interrupted", run_id, log_file, "stopped before its evaluation ended")
        if code != 0:
            return ConfigOutcome(config, "failed", run_id, log_file, "evaluation failed: " + _last_line(log_file))
    return ConfigOutcome(config, "finished", run_id, log_file)


def finished_configurations(sweep_name: str, experiment_id: str, evaluate: tuple[str, ...] = ()) -> dict[tuple, tuple[str, bool]]:
    """Every configuration that already FINISHED under the sweep, by ``grid.config_key``: its run
    id, and whether it holds every evaluation the grid asks for (``eval_<set>_psnr``)."""
    wanted = {schema.eval_key(schema.eval_set_name(name), "psnr") for name in evaluate}
    finished = {}
    for run_id, status, params, metric_names in run_store.sweep_children(sweep_name, experiment_id):
        key = grid.config_key(params) if all(name in params for name in grid.REQUIRED_CONFIG_FIELDS) else None
        if status == "FINISHED" and key is not None:
            evaluated = wanted <= set(metric_names)
            if key not in finished or evaluated:
                finished[key] = (run_id, evaluated)
    return finished


def sweep_run(
    definition: grid.SweepDefinition,
    *,
    max_parallel: int = 1,
    benchmark_root: str | None = None,
    output_dir: Path = Path("outputs"),
    checkpoint_root: Path = Path("checkpoints"),
    on_progress=lambda outcome: None,
) -> tuple[str, list[ConfigOutcome]]:
    """Trains every configuration of a grid as child runs of one parent run.

    Configurations that already FINISHED under this sweep (same name, same experiment) are
    skipped, or only evaluated if their evaluation is missing; failed ones are tried again. Each
    configuration runs in its own process, at most ``max_parallel`` at once; one failing does
    not stop the others. Ctrl-C (or SIGTERM) starts nothing more, stops the running ones (their
    runs end KILLED) and ends the parent run KILLED.

    Returns:
        the parent run id and one outcome per configuration, in grid order.
    """
    from concurrent.futures import ThreadPoolExecutor

    if max_parallel < 1:
        raise UserError(f"--max-parallel must be at least 1, got {max_parallel}")
    params = {"grid_name": definition.name, "configurations": len(definition.configs), "evaluate": ",".join(definition.evaluate)}
    children = _Children()
    with tracking.sweep_parent_run(definition.name, definition.experiment, params) as parent:
        parent_id, experiment_id = parent.info.run_id, parent.info.experiment_id
        finished = finished_configurations(definition.name, experiment_id, definition.evaluate)
        log_dir = output_dir / "sweeps" / definition.name
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
        env.update(MLFLOW_TRACKING_URI=tracking.tracking_uri(), MLFLOW_EXPERIMENT_ID=experiment_id)
        outcomes: list[ConfigOutcome | None] = [None] * len(definition.configs)
        pool = ThreadPoolExecutor(max_workers=max_parallel)
        try:
            futures = {}
            for index, config in enumerate(definition.configs):
                run_id, evaluated = finished.get(grid.config_key(config.as_params()), (None, False))
                if run_id and (evaluated or not definition.evaluate):
                    outcomes[index] = ConfigOutcome(config, "skipped", run_id, None)
                    on_progress(outcomes[index])
                    continue
                futures[index] = pool.submit(_train_and_evaluate, config, index, parent_id, experiment_id, log_dir, env,
                                             checkpoint_root, definition.evaluate, benchmark_root, children, run_id)
            for index, future in futures.items():
                outcomes[index] = future.result()
                on_progress(outcomes[index])
        except KeyboardInterrupt:
            children.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
        tracking.set_tags({"configurations_failed": str(sum(o.status == "failed" for o in outcomes))})
    return parent_id, outcomes
