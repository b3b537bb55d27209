"""The training configuration: one frozen, validated dataclass whose fields are the MLproject
parameters of the ``train`` entry point (a test keeps MLproject, CLI and this in agreement),
and what each field may hold.

Plain Python, no TensorFlow: the command line imports this to list its choices and reject a
bad option at once, before the seconds TensorFlow takes to import. ``model`` builds one
upsampling stage per name in ``UPSAMPLER_NAMES`` (a test keeps the two in agreement).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from .errors import ConfigError
from .schema import DEFAULT_TRANSPOSE_KERNEL, run_name

UPSAMPLER_NAMES = ("subpixel", "transpose", "nearest", "bilinear")
SUPPORTED_SCALES = (2, 3, 4)
# Keras dtype policies; ``auto`` picks one for the machine (``precision.choose_precision``).
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
PRECISIONS = ("auto", *POLICIES)
# Which devices and hosts train one model (``distribute.make_strategy``).
STRATEGIES = ("default", "mirrored", "multiworker")


def check_scale(scale: int) -> None:
    if scale not in SUPPORTED_SCALES:
        raise ConfigError(
            f"unsupported scale {scale!r}: use one of {', '.join(map(str, SUPPORTED_SCALES))}"
        )


def check_upsampler(upsampler: str) -> None:
    if upsampler not in UPSAMPLER_NAMES:
        raise ConfigError(f"unknown upsampler {upsampler!r}: use one of {', '.join(UPSAMPLER_NAMES)}")


def check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ConfigError(f"unknown dtype policy {policy!r}: use one of {', '.join(POLICIES)}")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")


def check_strategy(name: str) -> None:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def check_positive(name: str, value, kind=int) -> None:
    """Raises ConfigError unless ``value`` is a finite number > 0 (and whole, for ``kind=int``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    if kind is int and int(value) != value:
        raise ConfigError(f"{name} must be a whole number, got {value!r}")


def check_upsampler_variant(upsampler: str, transpose_kernel: int, icnr: bool) -> None:
    """The controls that separate an upsampler's mechanism from its capacity apply to one
    upsampler each: ``transpose_kernel`` to ``transpose``, ``icnr`` to ``subpixel``."""
    check_positive("transpose_kernel", transpose_kernel)
    if transpose_kernel != DEFAULT_TRANSPOSE_KERNEL and upsampler != "transpose":
        raise ConfigError(f"transpose_kernel {transpose_kernel} applies to upsampler transpose only, not {upsampler!r}; "
                          f"leave it at {DEFAULT_TRANSPOSE_KERNEL}")
    if not isinstance(icnr, bool):
        raise ConfigError(f"icnr must be true or false, got {icnr!r}")
    if icnr and upsampler != "subpixel":
        raise ConfigError(f"icnr applies to upsampler subpixel only, not {upsampler!r}; leave it false")


# The learning rate is halved when training passes each of these fractions (EDSR halves it
# at fixed points of a fixed-length schedule; fractions let short and long runs share it).
HALVING_FRACTIONS = (0.5, 0.75, 0.9)


def learning_rate_at(progress: float, base_learning_rate: float) -> float:
    """Base rate halved once for every fraction in ``HALVING_FRACTIONS`` that ``progress`` (0..1) passed."""
    return base_learning_rate * 0.5 ** sum(progress >= f for f in HALVING_FRACTIONS)


def parse_bool(name: str, value) -> bool:
    """A boolean param as MLflow stores it ("True"/"False"), or as a user writes it."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _coerce(name: str, value, kind: type):
    """``value`` as the field's type: whole numbers as int, numbers (also YAML's "1e-3", read as
    a string) as float, "True"/"False" as bool. Raises ConfigError for what is none of these."""
    if kind is bool:
        return parse_bool(name, value)
    if kind is str:
        return value if isinstance(value, str) else str(value)
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if kind is int:
        if not math.isfinite(value) or int(value) != value:
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Defaults follow the EDSR baseline (16 blocks, 64 filters, x2, LR patch 48, batch 16, L1
    loss, Adam halving its learning rate at fixed fractions of training), except the learning
    rate: 1e-3 rather than 1e-4, which with zero-initialised residual branches
    (``model.residual_block``) reaches a given PSNR in far fewer steps
    (benchmarks/time_to_quality.py). Not 2e-3, which gains a few hundredths of a dB in short
    runs but diverged in longer ones (6,000+ steps; README, "Speed and time to quality").
    """

    upsampler: str = "subpixel"
    transpose_kernel: int = DEFAULT_TRANSPOSE_KERNEL
    icnr: bool = False
    blocks: int = 16
    filters: int = 64
    scale: int = 2
    res_scale: float = 1.0
    dataset: str = "div2k"
    val_dataset: str = ""
    patch_size: int = 48
    batch_size: int = 16
    epochs: int = 10
    steps_per_epoch: int = 1000
    learning_rate: float = 1e-3
    seed: int = 42
    precision: str = "auto"
    time_budget_s: float = 0.0
    strategy: str = "default"

    def __post_init__(self):
        for f in dataclasses.fields(self):  # one form per value: 8, not 8.0 or "8"; 0.001, not "1e-3"
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name), type(f.default)))
        check_upsampler(self.upsampler)
        check_scale(self.scale)
        check_precision(self.precision)
        check_upsampler_variant(self.upsampler, self.transpose_kernel, self.icnr)
        for name in ("blocks", "filters", "patch_size", "batch_size", "epochs", "steps_per_epoch"):
            check_positive(name, getattr(self, name))
        check_positive("res_scale", self.res_scale, kind=float)
        check_positive("learning_rate", self.learning_rate, kind=float)
        if not math.isfinite(self.time_budget_s) or self.time_budget_s < 0:
            raise ConfigError(f"time_budget_s must be a finite number >= 0 (0 = no budget), got {self.time_budget_s}")
        check_strategy(self.strategy)
        if self.strategy == "multiworker" and self.time_budget_s:
            raise ConfigError("time_budget_s cannot be used with strategy multiworker (each host's clock would stop "
                              "it at a different step); limit training with epochs and steps_per_epoch")
        if not self.dataset:
            raise ConfigError("dataset is empty: use 'div2k', 'sample' or a directory of HR images")

    @property
    def run_name(self) -> str:
        return run_name(self.scale, self.blocks, self.filters, self.upsampler, self.transpose_kernel, self.icnr)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def training_memory_lower_bound(self) -> int:
        """Bytes that training needs at the very least: weights, gradients and Adam's two moments
        (float32), and one float32 activation per conv output of one batch (the backward pass
        keeps more). An underestimate on purpose: it only rejects what cannot possibly fit."""
        f, lr_pixels = self.filters, self.patch_size**2
        weights = 9 * (3 * f + (2 * self.blocks + 1) * f * f + 4 * f * f + 3 * f)
        activations = self.batch_size * lr_pixels * f * (2 * self.blocks + 2 + self.scale**2)
        return 4 * (4 * weights + activations)

    def as_params(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, str]) -> "TrainConfig":
        """Rebuilds a config from MLflow's string-valued params (for resuming a run)."""
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in params:
                value = params[f.name]
                if value == "''":  # how `mlflow run` logs an empty parameter
                    value = ""
                kwargs[f.name] = value  # __post_init__ turns the string into the field's type
        return cls(**kwargs)
