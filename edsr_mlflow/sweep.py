"""Study grids: definitions read from small YAML files in ``experiments/``, expanded into
training configurations. Pure: no MLflow, no processes (``workflows.sweep_run`` runs them).

A grid file::

    name: cpu_study                 # the sweep's identity: re-running it resumes it
    experiment: edsr-study          # MLflow experiment of the parent and child runs
    grid:                           # every combination of these lists is one configuration
      blocks: [4, 8, 16]
      upsampler: [subpixel, transpose, nearest, bilinear]
      seed: [1, 2]
    fixed:                          # the same for every configuration
      scale: 4
      dataset: div2k
    evaluate: [set5, set14]         # optional: benchmarks scored after each training run
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import TrainConfig
from .errors import ConfigError

CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
# A sweep's name is its identity in the store (tag ``sweep_name``, searched for on every re-run).
SWEEP_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class SweepDefinition:
    name: str
    experiment: str
    configs: tuple[TrainConfig, ...]
    evaluate: tuple[str, ...]


def config_key(params: dict[str, object]) -> tuple[tuple[str, str], ...]:
    """Identity of a configuration as MLflow stores it (every field as a string)."""
    return tuple((name, str(params[name])) for name in CONFIG_FIELDS)


def expand_grid(grid: dict[str, list], fixed: dict[str, object]) -> list[TrainConfig]:
    """Every combination of ``grid``'s lists, with ``fixed`` values; validated."""
    unknown = sorted((set(grid) | set(fixed)) - set(CONFIG_FIELDS))
    if unknown:
        raise ConfigError(f"unknown training parameter(s) {', '.join(unknown)}: use {', '.join(CONFIG_FIELDS)}")
    overlap = sorted(set(grid) & set(fixed))
    if overlap:
        raise ConfigError(f"{', '.join(overlap)} is both in grid and fixed: keep it in one")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{name} must be a non-empty list, got {values!r}")
    names = list(grid)
    return [TrainConfig(**fixed, **dict(zip(names, values))) for values in itertools.product(*(grid[n] for n in names))]


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
    unknown = sorted(set(raw) - {"name", "experiment", "grid", "fixed", "evaluate", "description"})
    if unknown:
        raise ConfigError(f"grid file {path}: unknown key(s) {', '.join(unknown)}; use name, experiment, grid, fixed, evaluate")
    configs = expand_grid(raw["grid"] or {}, raw.get("fixed") or {})
    name = str(raw.get("name") or path.stem)
    if not SWEEP_NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"grid file {path}: name {name!r} must start with a letter or digit and hold only "
                          "letters, digits, '_', '.' and '-' (at most 100)")
    return SweepDefinition(
        name=name,
        experiment=str(raw.get("experiment") or "edsr-sweeps"),
        configs=tuple(configs),
        evaluate=tuple(raw.get("evaluate") or ()),
    )


def train_arguments(config: TrainConfig) -> list[str]:
    """``edsr-mlflow train`` options that reproduce ``config``."""
    return [f"--{name.replace('_', '-')}={value}" for name, value in config.as_params().items()]
