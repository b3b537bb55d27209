"""Study grids: definitions read from small YAML files in ``experiments/``, expanded into
training configurations. Pure: no MLflow, no processes (``sweep.sweep_run`` runs them).

A grid file::

    name: cpu_study                 # the sweep's identity: re-running it resumes it
    experiment: edsr-study          # MLflow experiment of the parent and child runs
    grid:                           # every combination of these lists is one configuration
      blocks: [4, 8, 16]
      upsampler: [subpixel, transpose, nearest, bilinear]
      seed: [1, 2]
    variants:                       # optional: each combination once per entry, with its values
      - {}
      - {upsampler: transpose, transpose_kernel: 6}   # (grid then lists what variants don't set)
    fixed:                          # the same for every configuration
      scale: 4
      dataset: div2k
    evaluate: [set5, set14]         # optional: benchmarks scored after each training run
    comparisons:                    # optional, pre-declared: paired by seed in `compare`
      - [edsr_x4_b8_f64_subpixel, edsr_x4_b8_f64_transpose]      # within each training budget
      - [edsr_x4_b8_f64_subpixel@2000, edsr_x4_b8_f64_transpose@3270]  # across budgets: these steps
      - [edsr_x4_b8_f64_subpixel@2000@mixed_bfloat16, edsr_x4_b8_f64_subpixel@2000@float32]  # and precisions
    comparison_metrics: [eval_set5_psnr]   # optional (default: val_psnr)
    steps_to_gain_db: [0.5, 1.0]    # optional: `compare` reports the steps each configuration took
                                    # to reach bicubic + these gains on its validation curve
    margin_db: 0.05                 # optional, with primary, divergence, comparisons_declared: the
                                    # statistics `compare` reports (see ``hypotheses``)

The grid's factors (:func:`grid_factors`) are the training parameters its configurations vary,
seed aside, the upsampler shown with its controls (``transpose_k6``): blocks x upsampler for a
depth-by-upsampler grid. ``compare`` fits a model of them (``factorial``).

The order of the configurations is the grid's, last key fastest (so ``seed`` first makes every
stopping point a whole number of seeds), then the variants'.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from . import hypotheses
from .config import POLICIES, TrainConfig
from .errors import ConfigError
from .findings import DEFAULT_GAIN_THRESHOLDS_DB
from .hypotheses import DivergenceRule, PrimaryFamily
from .schema import STEPS_QUALIFIER, comparison_side, upsampler_variant

CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
# Fields every run of a sweep logged; runs from before the upsampler controls lack those two
# and used their defaults.
REQUIRED_CONFIG_FIELDS = tuple(name for name in CONFIG_FIELDS if name not in ("transpose_kernel", "icnr"))
# A sweep's name is its identity in the store (tag ``sweep_name``, searched for on every re-run).
SWEEP_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
ANALYSIS_KEYS = ("margin_db", "primary", "divergence", "comparisons_declared")


@dataclass(frozen=True)
class SweepDefinition:
    name: str
    experiment: str
    configs: tuple[TrainConfig, ...]
    evaluate: tuple[str, ...]
    comparisons: tuple[tuple[str, str], ...] = ()  # (run name a, run name b): a - b, paired by seed
    comparison_metrics: tuple[str, ...] = ("val_psnr",)
    steps_to_gain_db: tuple[float, ...] = DEFAULT_GAIN_THRESHOLDS_DB  # gains over bicubic (dB), for `compare`; () none
    comparisons_declared: tuple[dt.datetime | None, ...] = ()  # when each comparison was written (None: not said)
    margin_db: float = hypotheses.DEFAULT_MARGIN_DB
    primary: PrimaryFamily | None = None
    divergence: DivergenceRule | None = None

    @property
    def factors(self) -> dict[str, tuple[str, ...]]:
        return grid_factors(self.configs)


# Training parameters folded into the upsampler factor's levels (``transpose_k6``, ``subpixel_icnr``).
UPSAMPLER_CONTROLS = ("transpose_kernel", "icnr")


def factor_levels(config: TrainConfig) -> dict[str, str]:
    """Every training parameter of ``config`` but the seed, as factor levels (text; the
    upsampler with its controls)."""
    params = {name: str(value) for name, value in config.as_params().items() if name not in ("seed", *UPSAMPLER_CONTROLS)}
    return {**params, "upsampler": upsampler_variant(config.upsampler, config.transpose_kernel, config.icnr)}


def grid_factors(configs) -> dict[str, tuple[str, ...]]:
    """The parameters the configurations vary (seed aside), each with its levels in grid order."""
    levels: dict[str, list[str]] = {}
    for config in configs:
        for name, level in factor_levels(config).items():
            if level not in levels.setdefault(name, []):
                levels[name].append(level)
    return {name: tuple(values) for name, values in levels.items() if len(values) > 1}


def grid_runs(definition: SweepDefinition, runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of ``runs`` (``search_runs`` columns) that trained one of the grid's
    configurations (every param as the grid sets it, so runs of other budgets or precisions
    are not among them): ``run_id``, ``seed``, ``start_time``, a column per factor."""
    wanted = {config_key(config.as_params()): config for config in definition.configs}
    factors = definition.factors
    rows = []
    for _, run in runs.iterrows():
        params = {c.removeprefix("params."): v for c, v in run.items() if c.startswith("params.") and isinstance(v, str)}
        config = wanted.get(config_key(params))
        if config is not None:
            levels = factor_levels(config)
            rows.append({"run_id": run["run_id"], "seed": config.seed, "start_time": run.get("start_time"),
                         **{name: levels[name] for name in factors}})
    return pd.DataFrame(rows, columns=["run_id", "seed", "start_time", *factors])


def _comparisons(raw, configs: list[TrainConfig], path: Path, declared) -> tuple[hypotheses.PairedComparison, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"grid file {path}: comparisons must be a list of [run name a, run name b] pairs")
    default = hypotheses.declared_time(declared, f"grid file {path}: comparisons_declared")
    return tuple(hypotheses.paired_comparison(entry, _pair_check(configs, path), f"grid file {path}", default) for entry in raw)


def _pair_check(configs: list[TrainConfig], path: Path):
    """A check of one comparison's two sides against the grid's run names (raises ConfigError)."""
    names = {c.run_name for c in configs}
    return lambda a, b: _check_pair(a, b, names, path)


def _check_pair(a: str, b: str, names: set[str], path: Path) -> None:
    try:
        side_a, side_b = comparison_side(a), comparison_side(b)
    except ValueError as error:
        raise ConfigError(f"grid file {path}: comparison {error}") from None
    unknown = sorted({side_a.name, side_b.name} - names)
    if unknown:
        raise ConfigError(f"grid file {path}: comparisons name {', '.join(unknown)}, which the grid does not make; "
                          f"use run names such as {sorted(names)[0]}")
    if (side_a.steps is None) != (side_b.steps is None):
        raise ConfigError(f"grid file {path}: comparison {a} - {b} gives the steps ({STEPS_QUALIFIER}<steps>) of one side "
                          "only; give both (a comparison across budgets) or neither (pairs within each budget)")
    if (side_a.precision is None) != (side_b.precision is None):
        raise ConfigError(f"grid file {path}: comparison {a} - {b} gives the precision ({STEPS_QUALIFIER}<steps>{STEPS_QUALIFIER}<precision>) "
                          "of one side only; give both or neither")
    bad = [side.precision for side in (side_a, side_b) if side.precision is not None and side.precision not in POLICIES]
    if bad:
        raise ConfigError(f"grid file {path}: comparison {a} - {b}: unknown precision {bad[0]!r}, use one of {', '.join(POLICIES)}")


def _gain_thresholds(raw, path: Path) -> tuple[float, ...]:
    if raw is None:
        return DEFAULT_GAIN_THRESHOLDS_DB
    values = raw if isinstance(raw, list) else [raw]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 20 for v in values):
        raise ConfigError(f"grid file {path}: steps_to_gain_db must be a list of gains over bicubic in dB, "
                          f"each above 0 and at most 20 (e.g. [0.5, 1.0]), got {raw!r}")
    return tuple(sorted({float(v) for v in values}))


def config_key(params: dict[str, object]) -> tuple[tuple[str, str], ...] | None:
    """Identity of a configuration, from a config's params or a run's logged (string) params:
    each value in its one normalised form (8 = "8.0", 0.001 = "1e-3"), fields a run predates at
    their defaults. None for params that make no valid configuration."""
    try:
        config = TrainConfig.from_params({k: str(v) for k, v in params.items()})
    except (ConfigError, TypeError, ValueError):
        return None
    return tuple((name, str(value)) for name, value in config.as_params().items())


def expand_grid(grid: dict[str, list], fixed: dict[str, object], variants: list[dict] | None = None) -> list[TrainConfig]:
    """Every combination of ``grid``'s lists, once per variant (default: one empty variant),
    with ``fixed`` values; validated."""
    variants = variants if variants is not None else [{}]
    if not isinstance(variants, list) or not variants or not all(isinstance(v, dict) for v in variants):
        raise ConfigError(f"variants must be a non-empty list of mappings, got {variants!r}")
    varied = set().union(*variants)
    unknown = sorted((set(grid) | set(fixed) | varied) - set(CONFIG_FIELDS))
    if unknown:
        raise ConfigError(f"unknown training parameter(s) {', '.join(unknown)}: use {', '.join(CONFIG_FIELDS)}")
    overlap = sorted((set(grid) & set(fixed)) | (varied & set(fixed)))
    if overlap:
        raise ConfigError(f"{', '.join(overlap)} is both in fixed and in grid or variants: keep it in one")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{name} must be a non-empty list, got {values!r}")
    names = list(grid)
    configs = [
        TrainConfig(**{**fixed, **dict(zip(names, values)), **variant})
        for values in itertools.product(*(grid[n] for n in names))
        for variant in variants
    ]
    seen = set()
    for config in configs:
        if config in seen:
            raise ConfigError(f"the grid makes {config.run_name} seed {config.seed} twice: a variant repeats a grid value")
        seen.add(config)
    return configs


def load_sweep(path: str | Path) -> SweepDefinition:
    """Reads and validates a grid file (see the module docstring)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"grid file {path} does not exist; pass one of experiments/*.yaml") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"grid file {path} is not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(raw, dict) or "grid" not in raw:
        raise ConfigError(f"grid file {path} needs a 'grid:' mapping of parameter lists")
    unknown = sorted(set(raw) - {"name", "experiment", "grid", "variants", "fixed", "evaluate", "comparisons", "comparison_metrics",
                                "steps_to_gain_db", "description", *ANALYSIS_KEYS})
    if unknown:
        raise ConfigError(f"grid file {path}: unknown key(s) {', '.join(unknown)}; use name, experiment, grid, variants, "
                          f"fixed, evaluate, comparisons, comparison_metrics, steps_to_gain_db, {', '.join(ANALYSIS_KEYS)}")
    configs = expand_grid(raw["grid"] or {}, raw.get("fixed") or {}, raw.get("variants"))
    name = str(raw.get("name") or path.stem)
    if not SWEEP_NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"grid file {path}: name {name!r} must start with a letter or digit and hold only "
                          "letters, digits, '_', '.' and '-' (at most 100)")
    comparisons = _comparisons(raw.get("comparisons"), configs, path, raw.get("comparisons_declared"))
    where = f"grid file {path}"
    return SweepDefinition(
        name=name,
        experiment=str(raw.get("experiment") or "edsr-sweeps"),
        configs=tuple(configs),
        evaluate=tuple(raw.get("evaluate") or ()),
        comparisons=tuple((c.a, c.b) for c in comparisons),
        comparisons_declared=tuple(c.declared for c in comparisons),
        margin_db=hypotheses.margin(raw.get("margin_db"), where),
        primary=hypotheses.primary_family(raw.get("primary"), grid_factors(configs), _pair_check(configs, path), where),
        divergence=hypotheses.divergence_rule(raw.get("divergence"), where),
        comparison_metrics=tuple(str(m) for m in (raw.get("comparison_metrics") or ["val_psnr"])),
        steps_to_gain_db=_gain_thresholds(raw.get("steps_to_gain_db"), path),
    )


def train_arguments(config: TrainConfig) -> list[str]:
    """``edsr-mlflow train`` options that reproduce ``config``."""
    return [f"--{name.replace('_', '-')}={value}" for name, value in config.as_params().items()]
