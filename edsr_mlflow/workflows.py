"""Run-level workflows: the glue between core functions and the tracking store.

The CLI calls these with parsed arguments; these open MLflow runs (through ``tracking``)
and call the pure pieces (``data``, ``training``, ``evaluation``), which know nothing of MLflow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data, tracking, training
from .config import TrainConfig
from .errors import UserError
from .inference import model_upscaler
from .model import macs_per_lr_pixel
from .visuals import visual_samples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    run_id: str
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


def example_lr_crop(pairs: list[data.ImagePair], size: int = 16) -> np.ndarray:
    """A small real LR crop, used as the logged model's input example."""
    return pairs[0].lr_image[:size, :size]


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
    tracking.check_tracking_server()
    if resume_run_id:
        config = TrainConfig.from_params(tracking.run_params(resume_run_id))
    sr_data = data.load_sr_data(
        config.dataset, config.scale, config.patch_size,
        val_dataset=config.val_dataset or None, cache_dir=checkpoint_root / "cache",
    )
    with tracking.training_run(config, resume_run_id=resume_run_id, experiment=experiment, parent_run_id=parent_run_id) as run:
        run_id = run.info.run_id
        checkpoint_dir = checkpoint_root / run_id
        if resume_run_id:
            model, state = training.load_checkpoint(checkpoint_dir)
            tracking.log_epoch_history(state.history, skip=tracking.logged_epochs(run_id))
        else:
            if (checkpoint_dir / training.STATE_FILE).exists():
                raise UserError(f"{checkpoint_dir} already holds a checkpoint; resume it with --resume {run_id}")
            tracking.log_datasets(sr_data.train_info, sr_data.val_info)
            model, state = training.build_model(config), None
            tracking.log_model_facts(model.count_params(), macs_per_lr_pixel(model))
        result = training.train(
            config, model, sr_data, checkpoint_dir, state=state,
            callbacks=(tracking.EpochLogger(),), verbose=verbose,
        )
        metrics = final_metrics(result)
        tracking.log_final_metrics(metrics)
        tracking.set_tags({"stop_reason": result.stop_reason})
        tracking.log_visual_samples(visual_samples(sr_data.val_pairs, model_upscaler(model), config.scale))
        tracking.log_keras_model(model, example_lr_crop(sr_data.val_pairs))
    return TrainOutcome(run_id, result, metrics)
