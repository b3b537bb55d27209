"""Run-level workflows: the glue between core functions and the tracking store.

The CLI calls these with parsed arguments; these open MLflow runs (through ``tracking``)
and call the pure pieces (``data``, ``training``, ``evaluation``), which know nothing of MLflow.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import data, distribute, images, memory, model_logging, run_store, samples, schema, tracking, training
from .config import TrainConfig, check_scale
from .errors import UserError
from .evaluation import SetScores, score_set
from .hypotheses import DEFAULT_LOSS_RISE_FACTOR, largest_loss_rise
from .images import bicubic_upscaler
from .inference import model_upscaler
from .metrics import Y_PROTOCOL, Protocol
from .model import feature_bytes_per_lr_pixel, macs_per_lr_pixel, upscaling_factor
from .precision import PrecisionChoice
from .samples import visual_samples

if TYPE_CHECKING:  # crops reads findings, and so SciPy's statistics: seconds that train never needs
    from .crops import CropPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    run_id: str | None  # None for a non-chief worker, which logs nothing
    config: TrainConfig  # what was trained: a resumed run's own params
    result: training.TrainResult
    final_metrics: dict[str, float]
    precision: PrecisionChoice  # the dtype policy and XLA setting used on this machine, and why


class TrainingInterrupted(UserError):
    """Ctrl-C or SIGTERM during training: the run is KILLED; the message says what to do next."""

    exit_code = 130
    label = "interrupted"


def final_metrics(result: training.TrainResult) -> dict[str, float]:
    """The run-level summary: time, best and final validation PSNR and the gain over bicubic,
    and whether the training loss diverged by the default rule (``schema.FINAL_METRICS``)."""
    loss_rise = largest_loss_rise([epoch["train_loss"] for epoch in result.state.history])
    return {
        "train_time_s": result.state.train_time_s,
        "best_val_psnr": result.state.best_val_psnr,
        "bicubic_val_psnr": result.bicubic_val_psnr,
        "bicubic_val_ssim": result.bicubic_val_ssim,
        "val_psnr_gain": result.final_val_psnr - result.bicubic_val_psnr,
        "epochs_completed": float(result.state.epoch),
        "loss_rise": loss_rise,
        "diverged": float(loss_rise > DEFAULT_LOSS_RISE_FACTOR),
    }


def resumable_config(run_id: str) -> TrainConfig:
    """The configuration of a run that may be resumed; refuses, leaving the run as it is, one
    that FINISHED (resuming would log its final metrics and model a second time)."""
    run = run_store.existing_run(run_id)
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
                choice = training.precision_choice(config)
                tracking.set_tags({schema.PRECISION_USED_TAG: choice.policy, schema.PRECISION_REASON_TAG: choice.reason,
                                   schema.XLA_TAG: str(choice.xla)})
                result = training.train(
                    config, model, sr_data, checkpoint_dir, state=state,
                    callbacks=(model_logging.EpochLogger(),), verbose=verbose, strategy=strategy,
                )
                metrics = final_metrics(result)
                tracking.log_final_metrics(metrics)
                tracking.set_tags({"stop_reason": result.stop_reason, schema.DIVERGED_TAG: str(bool(metrics["diverged"])).lower()})
                tracking.log_visual_samples(visual_samples(sr_data.val_pairs, model_upscaler(model), config.scale))
                model_logging.log_keras_model(model)
        except KeyboardInterrupt:
            raise TrainingInterrupted(_interrupted_message(run_id, checkpoint_root)) from None
    return TrainOutcome(run_id, config, result, metrics, choice)


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
    return TrainOutcome(None, config, result, final_metrics(result), training.precision_choice(config))


# ---------------------------------------------------------------- evaluation

BICUBIC = "bicubic"


@dataclass(frozen=True)
class DatasetEvaluation:
    dataset: str  # short name, as in metric keys: set5, set14, div2k, <folder>
    scores: SetScores

    def measures(self) -> dict[str, float]:
        """Every measure of ``schema.EVAL_MEASURES``, in that order."""
        spectrum, bicubic_spectrum = self.scores.spectrum_means(), self.scores.spectrum_means(bicubic=True)
        return {
            "psnr": self.scores.psnr,
            "ssim": self.scores.ssim,
            "gain": self.scores.gain,
            "bicubic_psnr": self.scores.bicubic_psnr,
            "ms_per_mp": 1000.0 * self.scores.seconds_per_megapixel,
            "periodic_index": spectrum["periodic_index"],
            "psnr_low": spectrum["psnr_low"],
            "psnr_high": spectrum["psnr_high"],
            "bicubic_periodic_index": bicubic_spectrum["periodic_index"],
        }


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
        upscale = model_upscaler(model_logging.load_keras_model(model_uri), tile=tile, self_ensemble=self_ensemble)
    sets = [data.load_eval_set(name, scale, benchmark_root) for name in datasets]
    if run_id is not None:  # a first write now: a user who may not write to the run learns it before the scoring
        tracking.set_run_tags(run_id, {"last_evaluation": ",".join(name for name, _ in sets)})
        tracking.mark_model_training(run_store.existing_run(run_id).info.experiment_id)
    evaluations = [DatasetEvaluation(name, score_set(upscale, pairs, scale, spectra=True, protocol=protocol)) for name, pairs in sets]
    metrics, tables = {}, {}
    for e in evaluations:
        prefix = schema.metric_prefix(e.dataset, self_ensemble, protocol.name)
        metrics.update({f"{prefix}_{measure}": value for measure, value in e.measures().items()})
        tables[schema.eval_table_path(e.dataset, scale, self_ensemble, protocol.name)] = e.scores.table()
    if run_id is None:
        params = {"model": model_uri, "scale": scale, "datasets": ",".join(datasets)}
        with tracking.evaluation_run(f"bicubic_x{scale}", {"upscaler": BICUBIC, "scale": str(scale)}, params) as run:
            run_id = run.info.run_id
            tracking.log_to_run(run_id, metrics, tables)
    else:
        tracking.log_to_run(run_id, metrics, tables)
    return run_id, evaluations


def upscale_file(model_uri: str, input_path: Path, output_path: Path, *, tile: int | None = None, self_ensemble: bool = False,
                 progress: Callable[[int, int], None] | None = None, available_bytes: int | None = None) -> tuple[int, int]:
    """Super-resolves one image file with a logged model; returns the output (width, height).

    ``tile``: LR tile side, 0 for the whole image, None to choose by the memory the image needs
    (``memory.plan_upscale``, from the header, against ``available_bytes``, default what the
    machine has available), refused in one line before decoding if it cannot fit.
    ``progress``: called with (tiles done, tiles in all) after each tile."""
    import psutil

    width, height = images.read_size(input_path)  # the header only
    tracking.check_tracking_server()
    keras_model = model_logging.load_keras_model(model_uri)
    scale = upscaling_factor(keras_model)
    plan = memory.plan_upscale(width, height, scale, tile, feature_bytes_per_lr_pixel(keras_model),
                               psutil.virtual_memory().available if available_bytes is None else available_bytes,
                               image_name=str(input_path))
    upscale = model_upscaler(keras_model, tile=plan.tile, self_ensemble=self_ensemble, progress=progress)
    sr_image = upscale(images.load_rgb(input_path))
    images.save_rgb(sr_image, output_path)
    return sr_image.shape[1], sr_image.shape[0]


def textured_crop_grid(plan: CropPlan) -> np.ndarray:
    """The grid of :mod:`crops` as uint8 RGB: each planned run's logged model (loaded the safe
    way, :func:`model_logging.load_keras_model`) upscales every textured window; rows are titled
    with the configuration and the run."""
    upscalers = [(f"{run.label}  (run {run.run_id})", model_upscaler(model_logging.load_keras_model(f"runs:/{run.run_id}/model")))
                 for run in plan.runs.itertuples()]
    tensorflow_log, expected = logging.getLogger("tensorflow"), _ExpectedRetracing()
    tensorflow_log.addFilter(expected)
    try:
        return samples.crop_grid(plan.windows, upscalers, plan.scale, zoom=plan.zoom)
    finally:
        tensorflow_log.removeFilter(expected)


class _ExpectedRetracing(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning: each model's forward pass
    (:func:`inference.make_forward`) traces once, but TensorFlow counts the traces of that one
    Python function across models, so a dozen models read as retracing when nothing retraces."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


# ---------------------------------------------------------------- sweeps
