"""The names a run records, in one place: tags, run names, epoch and final metric keys, and the
``eval_<set>_<measure>`` keys with their parser.

Training writes these names and ``compare`` reads them back; both import them from here, so a
rename cannot quietly turn every run into "missing metrics". Pure: no MLflow, no TensorFlow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# ---------------------------------------------------------------- tags

KIND_TAG = "edsr_mlflow.kind"  # what a run is: one of the kinds below
TRAIN, EVALUATE, SWEEP, COMPARISON = "train", "evaluate", "sweep", "comparison"
SWEEP_LAUNCH = "sweep_launch"  # the run `mlflow run -e sweep` made: a record of one launch of a sweep
SWEEP_TAG = "sweep_name"  # on a sweep's parent run (and its launch records): the grid's name
SWEEP_PARENT_TAG = "sweep_parent_run_id"  # on a launch record: the parent run of the sweep it ran
# On a run `mlflow run` left RUNNING before this project started, closed by `runs clean --stale`: why.
CLOSED_STALE_TAG = "edsr_mlflow.closed_stale"
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
CONFIG_TAGS = ("upsampler", "blocks", "scale")  # copied from the params, for the UI's filters
# What ``precision`` (``auto`` or explicit) meant on the machine that trained the run.
PRECISION_USED_TAG, PRECISION_REASON_TAG, XLA_TAG = "precision_used", "precision_reason", "xla"

# ---------------------------------------------------------------- experiments

DEFAULT_EXPERIMENT = "edsr"  # where runs go when neither --experiment nor MLflow's environment names one
# MLflow's experiment type (the UI's "GenAI apps & agents" or "Machine learning"); set on every
# experiment this project logs into that has none.
EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow 3.17's UI shows GenAI or model training by a switch kept in the browser (GenAI unless
# changed), not by the experiment's kind; this query in a UI address turns it to model training.
UI_MODEL_TRAINING_QUERY = "workflowType=machine_learning"

# ---------------------------------------------------------------- run names

DEFAULT_TRANSPOSE_KERNEL = 3


def upsampler_variant(upsampler: str, transpose_kernel: int = DEFAULT_TRANSPOSE_KERNEL, icnr: bool = False) -> str:
    """The upsampler with its controls, as tables and run names show it: ``subpixel``,
    ``subpixel_icnr``, ``transpose`` (kernel 3), ``transpose_k6``, ``nearest``, ``bilinear``."""
    if upsampler == "transpose" and transpose_kernel != DEFAULT_TRANSPOSE_KERNEL:
        return f"transpose_k{transpose_kernel}"
    if upsampler == "subpixel" and icnr:
        return "subpixel_icnr"
    return upsampler


def run_name(scale: int, blocks: int, filters: int, upsampler: str,
             transpose_kernel: int = DEFAULT_TRANSPOSE_KERNEL, icnr: bool = False) -> str:
    """The name runs, models and table rows share, e.g. ``edsr_x4_b8_f64_transpose``,
    ``edsr_x4_b8_f32_transpose_k6``."""
    return f"edsr_x{scale}_b{blocks}_f{filters}_{upsampler_variant(upsampler, transpose_kernel, icnr)}"


# ---------------------------------------------------------------- training metrics

# A side of a pre-declared comparison: a run name, or ``<run name>@<total steps>`` for the
# runs of that configuration trained for that many steps (epochs x steps_per_epoch), which
# pairs by seed with another budget's runs (a compute-matched arm), optionally with the
# precision they trained in, ``<run name>@<steps>@<precision>`` (bfloat16 against float32).
STEPS_QUALIFIER = "@"


class ComparisonSide(NamedTuple):
    name: str  # the configuration's run name
    steps: int | None = None  # None: a bare run name, paired within each budget
    precision: str | None = None  # None: not named (runs of any precision)


def comparison_side(side: str) -> ComparisonSide:
    """``("edsr_x4_b8_f32_transpose", 3270, None)`` for ``edsr_x4_b8_f32_transpose@3270``,
    ``(..., 2000, "mixed_bfloat16")`` for ``...@2000@mixed_bfloat16``, steps and precision None
    for a bare run name. Raises ValueError for steps that are not a positive whole number, or
    more than two qualifiers (the precision name is checked where the choices are known)."""
    name, *qualifiers = side.split(STEPS_QUALIFIER)
    if not qualifiers:
        return ComparisonSide(side)
    if len(qualifiers) > 2:
        raise ValueError(f"{side!r}: write <run name>{STEPS_QUALIFIER}<steps> or <run name>{STEPS_QUALIFIER}<steps>{STEPS_QUALIFIER}<precision>")
    steps = qualifiers[0]
    if not steps.isdigit() or int(steps) <= 0:
        raise ValueError(f"{side!r}: the steps after {STEPS_QUALIFIER!r} must be a positive whole number")
    return ComparisonSide(name, int(steps), qualifiers[1] if len(qualifiers) == 2 else None)


# Logged once per epoch, at step = epoch number (1-based).
EPOCH_METRICS = ("train_loss", "val_psnr", "val_ssim", "val_psnr_rgb", "step_time_ms", "patches_per_s", "learning_rate")
# Logged once, when training ends.
# ``loss_rise``: the largest factor an epoch's training loss rose over the lowest before it;
# ``diverged``: 1 if that broke the default rule (``hypotheses.DEFAULT_LOSS_RISE_FACTOR``), also a tag.
FINAL_METRICS = ("train_time_s", "best_val_psnr", "bicubic_val_psnr", "bicubic_val_ssim", "val_psnr_gain", "epochs_completed",
                 "loss_rise", "diverged")
DIVERGED_TAG = "diverged"
# Logged as params with the configuration.
MODEL_FACTS = ("params_count", "macs_per_lr_pixel")
# Params that set how much training a run had (``TrainConfig`` fields): runs that differ in
# any of them are never pooled as seeds of one configuration, and tables say when they differ.
BUDGET_PARAMS = ("epochs", "steps_per_epoch", "patch_size", "batch_size", "time_budget_s", "precision")

# ---------------------------------------------------------------- evaluation metrics

DIV2K = "div2k"
# Benchmark sets by their short name in metric keys, with the folder that holds their HR images.
BENCHMARK_FOLDERS = {"set5": "Set5", "set14": "Set14", "bsd68": "BSD68", "b100": "B100", "urban100": "Urban100", "manga109": "Manga109"}
# What ``evaluate`` logs per set, in this order: eval_<set>_psnr, eval_<set>_ssim...
EVAL_MEASURES = ("psnr", "ssim", "gain", "bicubic_psnr", "ms_per_mp",
                 "periodic_index", "psnr_low", "psnr_high", "bicubic_periodic_index")
SELF_ENSEMBLE_SUFFIX = "se"
DEFAULT_PROTOCOL = "y"  # the protocol whose keys carry no protocol name
PAPER_RGB_PROTOCOL = "rgb_paper"  # the EDSR paper's: RGB, shave scale + 6 (metrics.PAPER_RGB_PROTOCOL)
EVAL_TABLES_FOLDER = "eval"  # a run's per-image score tables
_MEASURE_PATTERN = "|".join(sorted(EVAL_MEASURES, key=len, reverse=True))
_EVAL_KEY = re.compile(rf"eval_(?P<dataset>.+?)_(?P<measure>{_MEASURE_PATTERN})")


def eval_set_name(source: str) -> str:
    """The short name an evaluation source has in metric keys: ``div2k``, ``set5``..., or a
    folder's name in lower case with other characters as ``_`` (``eval_<name>_psnr``)."""
    key = source.strip().lower()
    if key == DIV2K or key in BENCHMARK_FOLDERS:
        return key
    return "".join(c if c.isalnum() else "_" for c in Path(source).expanduser().name.lower()).strip("_") or "images"


def metric_prefix(dataset: str, self_ensemble: bool = False, protocol: str = DEFAULT_PROTOCOL) -> str:
    """``eval_set5`` (``eval_set5_se`` with self-ensemble, ``eval_div2k_rgb_paper`` in the EDSR
    paper's protocol): the keys' stem for one set. The default protocol is left unnamed."""
    return (f"eval_{dataset}" + (f"_{SELF_ENSEMBLE_SUFFIX}" if self_ensemble else "")
            + ("" if protocol == DEFAULT_PROTOCOL else f"_{protocol}"))


def eval_key(dataset: str, measure: str, self_ensemble: bool = False, protocol: str = DEFAULT_PROTOCOL) -> str:
    """``eval_set5_psnr``...: the key of one measure on one set."""
    if measure not in EVAL_MEASURES:
        raise ValueError(f"unknown measure {measure!r}: one of {', '.join(EVAL_MEASURES)}")
    return f"{metric_prefix(dataset, self_ensemble, protocol)}_{measure}"


def eval_table_path(dataset: str, scale: int, self_ensemble: bool = False, protocol: str = DEFAULT_PROTOCOL) -> str:
    """``eval/set5_x4.csv`` (``eval/set5_x4_se.csv``, ``eval/div2k_x4_rgb_paper.csv``): the
    artifact holding one evaluation's per-image scores."""
    suffix = metric_prefix(dataset, self_ensemble, protocol).removeprefix(f"eval_{dataset}")
    return f"{EVAL_TABLES_FOLDER}/{dataset}_x{scale}{suffix}.csv"


def is_default_evaluation(stem: str) -> bool:
    """Whether an :class:`EvalKey`'s ``dataset`` stem is a set scored the default way (no
    self-ensemble, the default protocol): ``set5`` yes, ``set5_se`` and ``div2k_rgb_paper`` no."""
    return not stem.endswith((f"_{SELF_ENSEMBLE_SUFFIX}", f"_{PAPER_RGB_PROTOCOL}"))


@dataclass(frozen=True)
class EvalKey:
    """A parsed ``eval_...`` key. ``dataset`` is the keys' stem without ``eval_``: the set's
    short name, with ``_se`` and a protocol name where the evaluation had them, so that scores
    under different protocols never share a column."""

    dataset: str
    measure: str

    @property
    def key(self) -> str:
        return f"eval_{self.dataset}_{self.measure}"


def parse_eval_key(key: str) -> EvalKey | None:
    """The set and measure of an ``eval_<set>_<measure>`` key; None for any other key."""
    match = _EVAL_KEY.fullmatch(key)
    return EvalKey(match["dataset"], match["measure"]) if match else None
