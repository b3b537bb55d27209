"""Run-level workflows: the glue between core functions and the tracking store.

The CLI calls these with parsed arguments; these open MLflow runs (through ``tracking``)
and call the pure pieces (``data``, ``training``, ``evaluation``), which know nothing of MLflow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from . import data, distribute, images, run_store, sweep, tracking, training
from .config import TrainConfig
from .errors import UserError
from .evaluation import SetScores, score_set
from .inference import bicubic_upscaler, model_upscaler
from .metrics import Y_PROTOCOL, Protocol
from .model import macs_per_lr_pixel
from .options import check_scale
from .visuals import visual_samples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    run_id: str | None  # None for a non-chief worker, which logs nothing
    config: TrainConfig  # what was trained: a resumed run's own params
    result: training.TrainResult
    final_metrics: dict[str, float]


class TrainingInterrupted(UserError):
    """Ctrl-C or SIGTERM during training: the run is KILLED; the message says what to do next."""

    exit_code = 130
    label = "interrupted"


def final_metrics(result: training.TrainResult) -> dict[str, float]:
    """The run-level summary: time, best and final validation PSNR and the gain over bicubic."""
    return {
        "train_time_s": result.state.train_time_s,
        "best_val_psnr": result.state.best_val_psnr,
        "bicubic_val_psnr": result.bicubic_val_psnr,
        "bicubic_val_ssim": result.bicubic_val_ssim,
        "val_psnr_gain": result.final_val_psnr - result.bicubic_val_psnr,
        "epochs_completed": float(result.state.epoch),
    }


def resumable_config(run_id: str) -> TrainConfig:
    """The configuration of a run that may be resumed; refuses, leaving the run as it is, one
    that FINISHED (resuming would log its final metrics and model a second time)."""
    run = tracking.existing_run(run_id)
    if run.info.status == "FINISHED":
        raise UserError(f"run {run_id} already FINISHED; nothing to resume (train a new run to train longer)")
    config = TrainConfig.from_params(run.data.params)
    if config.strategy == "multiworker":
        raise UserError(f"run {run_id} trained on several hosts; resuming it is not supported: start a new run")
    return config


def train_run(
    config: TrainConfig,
    *,
    checkpoint_root: Path = Path("checkpoints"),
    resume_run_id: str | None = None,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    verbose: int | None = None,
) -> TrainOutcome:
    """Trains one EDSR and records everything in one MLflow run.

    Data is resolved before the run opens, so a missing folder or unavailable DIV2K leaves
    no run behind. With ``resume_run_id`` the run's own params are used, its last checkpoint
    (``checkpoint_root/<run_id>``) is loaded and training continues in the same run; every
    reason to refuse (a FINISHED run, no or a damaged checkpoint, another process training the
    run) is found before the run is reopened, so a refused resume changes nothing.
    """
    if resume_run_id:  # the run's own params, strategy included
        tracking.check_tracking_server()
        config = resumable_config(resume_run_id)
    strategy = distribute.make_strategy(config.strategy)  # before any other TensorFlow op
    distribute.check_global_batch(config.batch_size, strategy.num_replicas_in_sync)
    if not distribute.is_chief(config.strategy):
        return _train_as_worker(config, strategy, checkpoint_root, verbose)
    if not resume_run_id:  # (checked above when resuming) fail fast, before loading data
        tracking.check_tracking_server()
    with contextlib.ExitStack() as held:
        model = state = None
        if resume_run_id:
            held.enter_context(training.checkpoint_lock(checkpoint_root / resume_run_id, resume_run_id))
            model, state = training.load_checkpoint(checkpoint_root / resume_run_id, strategy)
        sr_data = _load_training_data(config, checkpoint_root)
        run_id = resume_run_id
        try:
            with tracking.training_run(config, resume_run_id=resume_run_id, experiment=experiment, parent_run_id=parent_run_id) as run:
                run_id = run.info.run_id
                checkpoint_dir = checkpoint_root / run_id
                if resume_run_id:
                    tracking.log_epoch_history(state.history, skip=tracking.logged_epochs(run_id))
                else:
                    if training.latest_checkpoint(checkpoint_dir) is not None:
                        raise UserError(f"{checkpoint_dir} already holds a checkpoint; resume it with --resume {run_id}")
                    held.enter_context(training.checkpoint_lock(checkpoint_dir, run_id))
                    tracking.log_datasets(sr_data.train_info, sr_data.val_info)
                    model = training.build_model(config, strategy)
                    tracking.log_model_facts(model.count_params(), macs_per_lr_pixel(model))
                    tracking.set_tags({"replicas": str(strategy.num_replicas_in_sync)})
                result = training.train(
                    config, model, sr_data, checkpoint_dir, state=state,
                    callbacks=(tracking.EpochLogger(),), verbose=verbose, strategy=strategy,
                )
                metrics = final_metrics(result)
                tracking.log_final_metrics(metrics)
                tracking.set_tags({"stop_reason": result.stop_reason})
                tracking.log_visual_samples(visual_samples(sr_data.val_pairs, model_upscaler(model), config.scale))
                tracking.log_keras_model(model)
        except KeyboardInterrupt:
            raise TrainingInterrupted(_interrupted_message(run_id, checkpoint_root)) from None
    return TrainOutcome(run_id, config, result, metrics)


def _interrupted_message(run_id: str | None, checkpoint_root: Path) -> str:
    if run_id is None:
        return "stopped before the run was created; nothing was logged"
    if training.latest_checkpoint(checkpoint_root / run_id) is None:
        return f"run {run_id} is marked KILLED; no epoch had finished, so there is nothing to resume: start a new run"
    folder = "" if checkpoint_root == Path("checkpoints") else f" --checkpoint-dir {checkpoint_root}"
    return f"run {run_id} is marked KILLED; resume it with `edsr-mlflow train --resume {run_id}{folder}`"


def _load_training_data(config: TrainConfig, checkpoint_root: Path) -> data.SRData:
    return data.load_sr_data(
        config.dataset, config.scale, config.patch_size,
        val_dataset=config.val_dataset or None, cache_dir=checkpoint_root / "cache",
    )


def _train_as_worker(config: TrainConfig, strategy, checkpoint_root: Path, verbose: int | None) -> TrainOutcome:
    """A non-chief worker of a multi-worker cluster: trains in step with the chief (gradients
    are all-reduced every step) and touches no tracking store; its checkpoints go to
    ``checkpoint_root/<task type>-<index>``."""
    task_type, index, _ = distribute.cluster_task()
    sr_data = _load_training_data(config, checkpoint_root)
    model = training.build_model(config, strategy)
    result = training.train(config, model, sr_data, checkpoint_root / f"{task_type}-{index}", verbose=verbose, strategy=strategy)
    return TrainOutcome(None, config, result, final_metrics(result))


# ---------------------------------------------------------------- evaluation

BICUBIC = "bicubic"


@dataclass(frozen=True)
class DatasetEvaluation:
    dataset: str  # short name, as in metric keys: set5, set14, div2k, <folder>
    scores: SetScores

    def metrics(self, prefix: str) -> dict[str, float]:
        spectrum, bicubic_spectrum = self.scores.spectrum_means(), self.scores.spectrum_means(bicubic=True)
        return {
            f"{prefix}_psnr": self.scores.psnr,
            f"{prefix}_ssim": self.scores.ssim,
            f"{prefix}_gain": self.scores.gain,
            f"{prefix}_bicubic_psnr": self.scores.bicubic_psnr,
            f"{prefix}_ms_per_mp": 1000.0 * self.scores.seconds_per_megapixel,
            f"{prefix}_periodic_index": spectrum["periodic_index"],
            f"{prefix}_psnr_low": spectrum["psnr_low"],
            f"{prefix}_psnr_high": spectrum["psnr_high"],
            f"{prefix}_bicubic_periodic_index": bicubic_spectrum["periodic_index"],
        }


def metric_prefix(dataset: str, self_ensemble: bool, protocol: Protocol = Y_PROTOCOL) -> str:
    """``eval_set5`` (``eval_set5_se`` with self-ensemble, ``eval_div2k_rgb_paper`` in the EDSR
    paper's protocol): the keys' stem for one dataset. The default protocol (Y, shave = scale)
    is the one left unnamed."""
    return f"eval_{dataset}" + ("_se" if self_ensemble else "") + ("" if protocol == Y_PROTOCOL else f"_{protocol.name}")


def evaluate_model(
    model_uri: str,
    datasets: list[str],
    *,
    scale: int | None = None,
    benchmark_root: str | None = None,
    self_ensemble: bool = False,
    tile: int = 0,
    protocol: Protocol = Y_PROTOCOL,
) -> tuple[str, list[DatasetEvaluation]]:
    """Scores a logged model (or ``bicubic``) on datasets and logs the results.

    A model's metrics go to the run that trained it (``eval_set5_psnr``...), with per-image
    tables as ``eval/<dataset>_x<scale>.csv``; ``bicubic`` gets a run of its own.

    Returns:
        the run id the results were logged to, and one evaluation per dataset.
    """
    tracking.check_tracking_server()
    if model_uri == BICUBIC:
        if not scale:
            raise UserError("the bicubic baseline needs --scale (2, 3 or 4)")
        check_scale(scale)
        upscale, run_id = bicubic_upscaler(scale), None
    else:
        run_id = tracking.model_run_id(model_uri)
        trained_scale = int(tracking.run_params(run_id)["scale"]) if run_id else None
        if scale and trained_scale and scale != trained_scale:
            raise UserError(f"{model_uri} was trained for x{trained_scale}, not x{scale}; drop --scale or pass {trained_scale}")
        scale = scale or trained_scale
        if not scale:
            raise UserError(f"{model_uri} has no training run to read its scale from; pass --scale")
        upscale = model_upscaler(tracking.load_keras_model(model_uri), tile=tile, self_ensemble=self_ensemble)
    sets = [data.load_eval_set(name, scale, benchmark_root) for name in datasets]
    if run_id is not None:  # a first write now: a user who may not write to the run learns it before the scoring
        tracking.set_run_tags(run_id, {"last_evaluation": ",".join(name for name, _ in sets)})
    evaluations = [DatasetEvaluation(name, score_set(upscale, pairs, scale, spectra=True, protocol=protocol)) for name, pairs in sets]
    prefixes = {e.dataset: metric_prefix(e.dataset, self_ensemble, protocol) for e in evaluations}
    metrics = {k: v for e in evaluations for k, v in e.metrics(prefixes[e.dataset]).items()}
    suffixes = {d: prefix.removeprefix(f"eval_{d}") for d, prefix in prefixes.items()}  # "_se", "_rgb_paper"...
    tables = {f"eval/{e.dataset}_x{scale}{suffixes[e.dataset]}.csv": e.scores.table() for e in evaluations}
    if run_id is None:
        params = {"model": model_uri, "scale": scale, "datasets": ",".join(datasets)}
        with tracking.evaluation_run(f"bicubic_x{scale}", {"upscaler": BICUBIC, "scale": str(scale)}, params) as run:
            run_id = run.info.run_id
            tracking.log_to_run(run_id, metrics, tables)
    else:
        tracking.log_to_run(run_id, metrics, tables)
    return run_id, evaluations


def upscale_file(model_uri: str, input_path: Path, output_path: Path, *, tile: int = 0, self_ensemble: bool = False) -> tuple[int, int]:
    """Super-resolves one image file with a logged model; returns the output (width, height)."""
    lr_image = images.load_rgb(input_path)
    tracking.check_tracking_server()
    upscale = model_upscaler(tracking.load_keras_model(model_uri), tile=tile, self_ensemble=self_ensemble)
    sr_image = upscale(lr_image)
    images.save_rgb(sr_image, output_path)
    return sr_image.shape[1], sr_image.shape[0]


# ---------------------------------------------------------------- sweeps


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
    has to be read back from output. With ``run_id`` (a FINISHED run missing its evaluation) only
    the evaluation runs.
    """
    log_file = log_dir / f"{index:03d}_{config.run_name}_s{config.seed}.log"
    if run_id is None:
        run_id = tracking.create_child_run(experiment_id, parent_run_id, config.run_name)
        train_command = [sys.executable, "-m", "edsr_mlflow", "train", *sweep.train_arguments(config),
                         f"--parent-run-id={parent_run_id}", f"--checkpoint-dir={checkpoint_root}"]
        code = children.run(train_command, log_file, {**env, "MLFLOW_RUN_ID": run_id})
        status = tracking.close_if_running(run_id, "KILLED" if children.stopping.is_set() else "FAILED")
        if code is None or children.stopping.is_set():
            return ConfigOutcome(config, "interrupted", run_id, log_file, f"stopped; run {run_id} is {status}")
        if code != 0 or status != "FINISHED":
            return ConfigOutcome(config, "failed", run_id, log_file, _last_line(log_file))
    if evaluate:
        eval_command = [sys.executable, "-m", "edsr_mlflow", "evaluate", f"--model=runs:/{run_id}/model",
                        f"--dataset={','.join(evaluate)}", f"--benchmark-root={benchmark_root or ''}"]
        code = children.run(eval_command, log_file, env)
        if code is None or children.stopping.is_set():
            return ConfigOutcome(config, "interrupted", run_id, log_file, "stopped before its evaluation ended")
        if code != 0:
            return ConfigOutcome(config, "failed", run_id, log_file, "evaluation failed: " + _last_line(log_file))
    return ConfigOutcome(config, "finished", run_id, log_file)


def finished_configurations(sweep_name: str, experiment_id: str, evaluate: tuple[str, ...] = ()) -> dict[tuple, tuple[str, bool]]:
    """Every configuration that already FINISHED under the sweep, by ``sweep.config_key``: its run
    id, and whether it holds every evaluation the grid asks for (``eval_<set>_psnr``)."""
    wanted = {f"{metric_prefix(data.eval_set_name(name), False)}_psnr" for name in evaluate}
    finished = {}
    for run_id, status, params, metric_names in run_store.sweep_children(sweep_name, experiment_id):
        key = sweep.config_key(params) if all(name in params for name in sweep.REQUIRED_CONFIG_FIELDS) else None
        if status == "FINISHED" and key is not None:
            evaluated = wanted <= set(metric_names)
            if key not in finished or evaluated:
                finished[key] = (run_id, evaluated)
    return finished


def sweep_run(
    definition: sweep.SweepDefinition,
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
                run_id, evaluated = finished.get(sweep.config_key(config.as_params()), (None, False))
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
