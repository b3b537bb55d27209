"""The ``edsr-mlflow`` command line: thin click adapters over ``workflows``.

Every MLproject entry point calls the command of the same name with the same parameters
(tests/test_interface.py keeps them in agreement). User errors print one line and exit
non-zero; Ctrl-C exits 130 with the run marked KILLED.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path

import click

from .config import TrainConfig
from .errors import UserError
from .model import PRECISIONS, SUPPORTED_SCALES, UPSAMPLERS

DEFAULTS = TrainConfig()


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def friendly_errors(command):
    """One line and an exit code for problems the user can fix; tracebacks only for bugs."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: the run is marked KILLED; resume it with --resume RUN_ID", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main():
    """Train, evaluate and compare EDSR super-resolution models, tracked in MLflow.

    Runs go to MLFLOW_TRACKING_URI (default sqlite:///mlflow.db); browse them with
    `mlflow ui --backend-store-uri sqlite:///mlflow.db`.
    """
    _quiet_tensorflow()


@main.command()
@click.option("--upsampler", type=click.Choice(list(UPSAMPLERS)), default=DEFAULTS.upsampler, help="Upsampling block.")
@click.option("--blocks", type=int, default=DEFAULTS.blocks, help="Residual blocks (>= 1).")
@click.option("--filters", type=int, default=DEFAULTS.filters, help="Feature channels (>= 1).")
@click.option("--scale", type=click.Choice([str(s) for s in SUPPORTED_SCALES]), default=str(DEFAULTS.scale), help="Upscaling factor.")
@click.option("--res-scale", type=float, default=DEFAULTS.res_scale, help="Residual scaling (> 0).")
@click.option("--dataset", default=DEFAULTS.dataset, help="'div2k', 'sample', or a directory of HR images.")
@click.option("--val-dataset", default=DEFAULTS.val_dataset, help="Validation source; empty: DIV2K validation split, or every 10th image of the directory.")
@click.option("--patch-size", type=int, default=DEFAULTS.patch_size, help="LR patch side in pixels.")
@click.option("--batch-size", type=int, default=DEFAULTS.batch_size, help="Patches per step.")
@click.option("--epochs", type=int, default=DEFAULTS.epochs, help="Epochs (validation and checkpoint after each).")
@click.option("--steps-per-epoch", type=int, default=DEFAULTS.steps_per_epoch, help="Training steps per epoch.")
@click.option("--learning-rate", type=float, default=DEFAULTS.learning_rate, help="Adam learning rate, halved at 50%, 75% and 90% of training.")
@click.option("--seed", type=int, default=DEFAULTS.seed, help="Seed for weights, patches and augmentation.")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default=DEFAULTS.precision, help="Keras dtype policy of the body.")
@click.option("--time-budget-s", type=float, default=DEFAULTS.time_budget_s, help="Stop training after this many seconds (0 = no limit), then validate and log.")
@click.option("--experiment", default=None, help="MLflow experiment name (default: the active one, or MLFLOW_EXPERIMENT_NAME).")
@click.option("--checkpoint-dir", type=click.Path(path_type=Path), default=Path("checkpoints"), help="Root of per-run checkpoint folders.")
@click.option("--resume", "resume_run_id", default=None, help="Continue this run id from its last checkpoint (its own params are used).")
@friendly_errors
def train(experiment, checkpoint_dir, resume_run_id, **params):
    """Train one EDSR model and log it to MLflow."""
    params["scale"] = int(params["scale"])
    config = TrainConfig(**params)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    from .workflows import train_run

    outcome = train_run(config, checkpoint_root=checkpoint_dir, resume_run_id=resume_run_id, experiment=experiment)
    m = outcome.final_metrics
    click.echo(
        f"run {outcome.run_id} ({config.run_name}): val PSNR {outcome.result.final_val_psnr:.2f} dB, "
        f"{m['val_psnr_gain']:+.2f} dB over bicubic, {m['train_time_s']:.0f} s of training"
    )
    click.echo("browse it: mlflow ui --backend-store-uri " + _tracking_uri_for_ui())


def _tracking_uri_for_ui() -> str:
    from .tracking import tracking_uri

    return tracking_uri()


def _not_yet(name: str):
    @main.command(name=name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def command():
        click.echo(f"error: `{name}` is not yet available in this version of edsr-mlflow", err=True)
        sys.exit(1)

    command.__doc__ = f"({name}: not yet available)"
    return command


evaluate = _not_yet("evaluate")
compare = _not_yet("compare")
sweep = _not_yet("sweep")
