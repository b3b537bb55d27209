"""What a grid file says it will test, and when it said so: the primary family, the practical
margin, the divergence rule, the declaration times. Pure: read by ``grid.load_sweep``, used by
``analysis``.

In a grid file::

    margin_db: 0.05                 # practical margin (dB): "larger than", "equivalent within"
    primary:                        # a small family (3-4), Holm within it; all else exploratory
      declared: 2026-11-26T14:20:31Z
      metrics: [val_psnr, eval_bsd68_psnr]
      hypotheses:
        - {factor: blocks, a: 8, b: 2}                        # a main effect of the grid's model
        - {factor: upsampler, a: subpixel, b: transpose, at: {blocks: 8}}  # within one level
        - {pair: [edsr_x4_b8_f32_subpixel, edsr_x4_b8_f32_nearest]}     # or paired by seed
    divergence:                     # a run whose training loss rises past this is diverged
      loss_rise_factor: 2.0         # an epoch's loss above 2x the lowest before it
      drop: true                    # left out of the model and the tests (counted either way)
      declared: 2026-12-02T13:00:00Z
    comparisons_declared: 2026-11-26T14:20:31Z   # when the comparisons: list was written
    comparisons:
      - [a, b]
      - {pair: [a, b], declared: 2026-11-27T02:24:21Z}    # one added later, with its own time

A declaration is compared with the start times of the grid's runs: one written after runs
existed is reported as such (``analysis.declared_note``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

DEFAULT_MARGIN_DB = 0.05


@dataclass(frozen=True)
class ModelContrast:
    """Level ``a`` minus level ``b`` of ``factor`` in the grid's model (marginal means),
    averaged over the other factors, or within the ``at`` levels of some."""

    factor: str
    a: str
    b: str
    at: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        where = f" at {', '.join(f'{k}={v}' for k, v in self.at)}" if self.at else ""
        return f"{self.factor}: {self.a} - {self.b}{where}"


@dataclass(frozen=True)
class PairedComparison:
    """Run name ``a`` minus run name ``b`` (``schema.comparison_side`` forms), paired by seed."""

    a: str
    b: str
    declared: dt.datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.a} - {self.b}"


Hypothesis = ModelContrast | PairedComparison


@dataclass(frozen=True)
class PrimaryFamily:
    hypotheses: tuple[Hypothesis, ...]
    metrics: tuple[str, ...]
    declared: dt.datetime | None = None

    @property
    def size(self) -> int:
        """The tests Holm corrects for: every hypothesis on every metric."""
        return len(self.hypotheses) * len(self.metrics)


def largest_loss_rise(losses) -> float:
    """The largest factor by which an epoch's training loss exceeded the lowest loss of the
    epochs before it; 1.0 where none did (a falling loss, or a single epoch). Losses are L1,
    so positive: a rise past ``k`` is exactly an epoch's loss above ``k`` x the lowest before it."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) < 2:
        return 1.0
    return float(max(1.0, np.max(losses[1:] / np.minimum.accumulate(losses)[:-1])))


# The rule every training run records (tag and metric ``diverged``): the one the CPU study
# declared, where the next largest rise of its 36 runs was 1.49x.
DEFAULT_LOSS_RISE_FACTOR = 2.0


@dataclass(frozen=True)
class DivergenceRule:
    loss_rise_factor: float
    drop: bool = False
    declared: dt.datetime | None = None

    @property
    def description(self) -> str:
        return f"an epoch's training loss above {self.loss_rise_factor:g}x the lowest of the epochs before it"

    def broken_by(self, losses) -> bool:
        """Whether the training losses ``losses`` (epoch by epoch) break this rule."""
        return largest_loss_rise(losses) > self.loss_rise_factor


def declared_time(raw, where: str) -> dt.datetime | None:
    """A declaration time as YAML gives it (a date, a timestamp, or ISO text), in UTC."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{where}: declared must be a date or time such as 2026-11-26T14:20:31Z, got {raw!r}") from None
    if isinstance(raw, dt.datetime):
        return raw.replace(tzinfo=dt.timezone.utc) if raw.tzinfo is None else raw.astimezone(dt.timezone.utc)
    if isinstance(raw, dt.date):
        return dt.datetime(raw.year, raw.month, raw.day, tzinfo=dt.timezone.utc)
    raise ConfigError(f"{where}: declared must be a date or time such as 2026-11-26T14:20:31Z, got {raw!r}")


def margin(raw, where: str) -> float:
    if raw is None:
        return DEFAULT_MARGIN_DB
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 < raw < 10 or math.isnan(raw):
        raise ConfigError(f"{where}: margin_db must be a number of dB above 0 and below 10 (e.g. 0.05), got {raw!r}")
    return float(raw)


def divergence_rule(raw, where: str) -> DivergenceRule | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"loss_rise_factor", "drop", "declared"} or "loss_rise_factor" not in raw:
        raise ConfigError(f"{where}: divergence must be a mapping with loss_rise_factor (and optionally drop, declared), "
                          f"e.g. {{loss_rise_factor: 2.0, drop: true}}, got {raw!r}")
    factor = raw["loss_rise_factor"]
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
        raise ConfigError(f"{where}: divergence.loss_rise_factor must be a number above 1 (e.g. 2.0), got {factor!r}")
    if not isinstance(raw.get("drop", False), bool):
        raise ConfigError(f"{where}: divergence.drop must be true or false, got {raw['drop']!r}")
    return DivergenceRule(float(factor), raw.get("drop", False), declared_time(raw.get("declared"), f"{where}: divergence"))


def primary_family(raw, factors: dict[str, tuple[str, ...]], check_pair, where: str) -> PrimaryFamily | None:
    """The ``primary:`` mapping, each hypothesis checked against the grid's ``factors`` (name ->
    levels) or, for a pair, by ``check_pair(a, b)`` (raises ConfigError)."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"hypotheses", "metrics", "declared"} or not raw.get("hypotheses"):
        raise ConfigError(f"{where}: primary must be a mapping with hypotheses (a list), and optionally metrics and declared")
    metrics = raw.get("metrics") or ["val_psnr"]
    if not isinstance(metrics, list) or not all(isinstance(m, str) and m for m in metrics):
        raise ConfigError(f"{where}: primary.metrics must be a list of metric names such as [val_psnr, eval_bsd68_psnr]")
    hypotheses = raw["hypotheses"]
    if not isinstance(hypotheses, list):
        raise ConfigError(f"{where}: primary.hypotheses must be a list")
    parsed = tuple(_hypothesis(h, factors, check_pair, where) for h in hypotheses)
    if len(set(parsed)) < len(parsed):
        raise ConfigError(f"{where}: primary.hypotheses repeats a hypothesis")
    return PrimaryFamily(parsed, tuple(metrics), declared_time(raw.get("declared"), f"{where}: primary"))


def _hypothesis(raw, factors, check_pair, where: str) -> Hypothesis:
    if isinstance(raw, dict) and set(raw) <= {"pair", "declared"} and "pair" in raw:
        return paired_comparison(raw, check_pair, where)
    if not isinstance(raw, dict) or set(raw) - {"factor", "a", "b", "at"} or not {"factor", "a", "b"} <= set(raw):
        raise ConfigError(f"{where}: a primary hypothesis is {{factor: F, a: level, b: level}} (optionally at: {{factor: level}}) "
                          f"or {{pair: [run name a, run name b]}}, got {raw!r}")
    factor = str(raw["factor"])
    if factor not in factors:
        raise ConfigError(f"{where}: primary hypothesis names factor {factor!r}; the grid's factors are {', '.join(factors) or 'none'}")
    a, b = str(raw["a"]), str(raw["b"])
    at = raw.get("at") or {}
    if not isinstance(at, dict):
        raise ConfigError(f"{where}: primary hypothesis {factor}: at must be a mapping such as {{blocks: 8}}")
    at = {str(k): str(v) for k, v in at.items()}
    if factor in at or set(at) - set(factors):
        raise ConfigError(f"{where}: primary hypothesis {factor}: at names {', '.join(at)}; use other factors of {', '.join(factors)}")
    for name, level in [(factor, a), (factor, b), *at.items()]:
        if level not in factors[name]:
            raise ConfigError(f"{where}: primary hypothesis {factor}: {name} has no level {level!r}; use one of {', '.join(factors[name])}")
    if a == b:
        raise ConfigError(f"{where}: primary hypothesis {factor}: a and b are both {a!r}")
    return ModelContrast(factor, a, b, tuple(sorted(at.items())))


def paired_comparison(raw, check_pair, where: str, default_declared: dt.datetime | None = None) -> PairedComparison:
    """A ``comparisons:`` entry, ``[a, b]`` or ``{pair: [a, b], declared: ...}``, checked by
    ``check_pair(a, b)``."""
    declared = default_declared
    if isinstance(raw, dict) and set(raw) <= {"pair", "declared"}:
        declared = declared_time(raw.get("declared"), where) or default_declared
        raw = raw.get("pair")
    if not isinstance(raw, list) or len(raw) != 2:
        raise ConfigError(f"{where}: comparisons must be a list of [run name a, run name b] pairs "
                          "(or {pair: [a, b], declared: <time>})")
    a, b = str(raw[0]), str(raw[1])
    check_pair(a, b)
    return PairedComparison(a, b, declared)
