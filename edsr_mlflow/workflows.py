"""Run-level workflows: the glue between core functions and the tracking store.

The CLI calls these with parsed arguments; these open MLflow runs (through ``tracking``)
and call the pure pieces (``data``, ``training``, ``evaluation``), which know nothing of MLflow.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import data, distribute, images, run_store, sweep, tracking, training
from .config import TrainConfig
from .errors import UserError
from .evaluation import SetScores, score_set
from .inference import bicubic_upscaler, model_upscaler
from .model import macs_per_lr_pixel
from .options import check_scale
from .visuals import visual_samples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    run_id: str | None  # None for a non-chief worker, which logs nothing
    result: training.TrainResult
    final_metrics: dict[str, float]


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
    (``checkpoint_root/<run_id>``) is loaded and training continues in the same run.
    """
    if resume_run_id:  # the run's own params, strategy included
        tracking.check_tracking_server()
        config = TrainConfig.from_params(tracking.run_params(resume_run_id))
        if config.strategy == "multiworker":
            raise UserError(f"run {resume_run_id} trained on several hosts; resuming it is not supported: start a new run")
    strategy = distribute.make_strategy(config.strategy)  # before any other TensorFlow op
    distribute.check_global_batch(config.batch_size, strategy.num_replicas_in_sync)
    if not distribute.is_chief(config.strategy):
        return _train_as_worker(config, strategy, checkpoint_root, verbose)
    if not resume_run_id:  # (checked above when resuming) fail fast, before loading data
        tracking.check_tracking_server()
    sr_data = _load_training_data(config, checkpoint_root)
    with tracking.training_run(config, resume_run_id=resume_run_id, experiment=experiment, parent_run_id=parent_run_id) as run:
        run_id = run.info.run_id
        checkpoint_dir = checkpoint_root / run_id
        if resume_run_id:
            model, state = training.load_checkpoint(checkpoint_dir, strategy)
            tracking.log_epoch_history(state.history, skip=tracking.logged_epochs(run_id))
        else:
            if (checkpoint_dir / training.STATE_FILE).exists():
                raise UserError(f"{checkpoint_dir} already holds a checkpoint; resume it with --resume {run_id}")
            tracking.log_datasets(sr_data.train_info, sr_data.val_info)
            model, state = training.build_model(config, strategy), None
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
    return TrainOutcome(run_id, result, metrics)


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
    return TrainOutcome(None, result, final_metrics(result))


# ---------------------------------------------------------------- evaluation

BICUBIC = "bicubic"


@dataclass(frozen=True)
class DatasetEvaluation:
    dataset: str  # short name, as in metric keys: set5, set14, div2k, <folder>
    scores: SetScores

    def metrics(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_psnr": self.scores.psnr,
            f"{prefix}_ssim": self.scores.ssim,
            f"{prefix}_gain": self.scores.gain,
            f"{prefix}_bicubic_psnr": self.scores.bicubic_psnr,
            f"{prefix}_ms_per_mp": 1000.0 * self.scores.seconds_per_megapixel,
        }


def metric_prefix(dataset: str, self_ensemble: bool) -> str:
    """``eval_set5`` (``eval_set5_se`` with self-ensemble): the keys' stem for one dataset."""
    return f"eval_{dataset}" + ("_se" if self_ensemble else "")


def evaluate_model(
    model_uri: str,
    datasets: list[str],
    *,
    scale: int | None = None,
    benchmark_root: str | None = None,
    self_ensemble: bool = False,
    tile: int = 0,
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
    evaluations = [DatasetEvaluation(name, score_set(upscale, pairs, scale)) for name, pairs in sets]
    metrics = {k: v for e in evaluations for k, v in e.metrics(metric_prefix(e.dataset, self_ensemble)).items()}
    tables = {f"eval/{e.dataset}_x{scale}{'_se' if self_ensemble else ''}.csv": e.scores.table() for e in evaluations}
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
    status: str  # "skipped" (finished earlier), "finished", "failed"
    run_id: str | None
    log_file: Path | None
    message: str = ""


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _run_logged(command: list[str], log_file: Path, env: dict[str, str]) -> int:
    with log_file.open("a") as log_stream:
        log_stream.write("$ " + " ".join(command) + "\n")
        log_stream.flush()
        return subprocess.run(command, stdout=log_stream, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL).returncode


def _train_and_evaluate(config: TrainConfig, index: int, parent_run_id: str, log_dir: Path, env: dict[str, str],
                        checkpoint_root: Path, evaluate: tuple[str, ...], benchmark_root: str | None) -> ConfigOutcome:
    """One configuration in its own process, so a crash or leak cannot touch the others."""
    log_file = log_dir / f"{index:03d}_{config.run_name}_s{config.seed}.log"
    train_command = [sys.executable, "-m", "edsr_mlflow", "train", *sweep.train_arguments(config),
                     f"--parent-run-id={parent_run_id}", f"--checkpoint-dir={checkpoint_root}"]
    if _run_logged(train_command, log_file, env) != 0:
        return ConfigOutcome(config, "failed", None, log_file, _last_line(log_file))
    match = re.search(r"^run ([0-9a-f]{32}) ", log_file.read_text(), flags=re.MULTILINE)
    run_id = match.group(1) if match else None
    if evaluate and run_id:
        eval_command = [sys.executable, "-m", "edsr_mlflow", "evaluate", f"--model=runs:/{run_id}/model",
                        f"--dataset={','.join(evaluate)}", f"--benchmark-root={benchmark_root or ''}"]
        if _run_logged(eval_command, log_file, env) != 0:
            return ConfigOutcome(config, "failed", run_id, log_file, "evaluation failed: " + _last_line(log_file))
    return ConfigOutcome(config, "finished", run_id, log_file)


def finished_configurations(sweep_name: str, experiment_id: str) -> dict[tuple, str]:
    """Run id of every configuration that already FINISHED under the sweep, by ``sweep.config_key``."""
    return {
        sweep.config_key(p): run_id
        for run_id, status, p in run_store.sweep_children(sweep_name, experiment_id)
        if status == "FINISHED" and all(name in p for name in sweep.CONFIG_FIELDS)
    }


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
    skipped; failed ones are tried again. Each configuration runs in its own process, at most
    ``max_parallel`` at once; one failing does not stop the others.

    Returns:
        the parent run id and one outcome per configuration, in grid order.
    """
    from concurrent.futures import ThreadPoolExecutor

    if max_parallel < 1:
        raise UserError(f"--max-parallel must be at least 1, got {max_parallel}")
    params = {"grid_name": definition.name, "configurations": len(definition.configs), "evaluate": ",".join(definition.evaluate)}
    with tracking.sweep_parent_run(definition.name, definition.experiment, params) as parent:
        parent_id, experiment_id = parent.info.run_id, parent.info.experiment_id
        finished = finished_configurations(definition.name, experiment_id)
        log_dir = output_dir / "sweeps" / definition.name
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
        env.update(MLFLOW_TRACKING_URI=tracking.tracking_uri(), MLFLOW_EXPERIMENT_ID=experiment_id)
        outcomes: list[ConfigOutcome | None] = [None] * len(definition.configs)
        with ThreadPoolExecutor(max_workers=max_parallel) as pool:
            futures = {}
            for index, config in enumerate(definition.configs):
                key = sweep.config_key(config.as_params())
                if key in finished:
                    outcomes[index] = ConfigOutcome(config, "skipped", finished[key], None)
                    on_progress(outcomes[index])
                    continue
                futures[index] = pool.submit(_train_and_evaluate, config, index, parent_id, log_dir, env,
                                             checkpoint_root, definition.evaluate, benchmark_root)
            for index, future in futures.items():
                outcomes[index] = future.result()
                on_progress(outcomes[index])
        tracking.set_tags({"configurations_failed": str(sum(o.status == "failed" for o in outcomes))})
    return parent_id, outcomes
