"""MLproject, the click CLI, TrainConfig and the README's parameter table say the same thing."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edsr_mlflow import cli
from edsr_mlflow.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
MLPROJECT = yaml.safe_load((ROOT / "MLproject").read_text())
ENTRY_POINTS = MLPROJECT["entry_points"]
CLI_ONLY_TRAIN_OPTIONS = {"experiment", "checkpoint_dir", "resume_run_id", "parent_run_id", "then_evaluate", "benchmark_root"}


def click_options(command) -> dict[str, object]:
    return {p.name: p.default for p in command.params if not p.name.startswith("help")}


def test_every_entry_point_exists_and_calls_the_command_of_its_name():
    assert set(ENTRY_POINTS) == {"main", "train", "evaluate", "compare", "sweep"}
    for name, entry in ENTRY_POINTS.items():
        command = "train" if name == "main" else name
        assert entry["command"].startswith(f"python -m edsr_mlflow {command}"), name
        assert command in cli.main.commands


def test_main_is_train():
    assert ENTRY_POINTS["main"] == ENTRY_POINTS["train"]


def test_train_parameters_are_the_config_fields():
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert set(ENTRY_POINTS["train"]["parameters"]) == set(fields)


def readme_table(heading: str) -> dict[str, str]:
    """Rows of the Markdown table under ``heading``: first column (in backticks) -> second."""
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1]
    rows = {}
    for line in section.splitlines()[1:]:
        if not line.strip():
            if rows:
                break
            continue
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        match = re.fullmatch(r"`([a-z_]+)`", cells[0])
        if match:
            rows[match.group(1)] = cells[1].strip("`")
    return rows


# Entry points with parameters, and the click options that MLproject deliberately leaves out.
# compare --plan only prints (it logs nothing), so it is no MLproject parameter: `mlflow run` would
# create a run for it.
CLI_ONLY = {"train": CLI_ONLY_TRAIN_OPTIONS, "evaluate": set(), "compare": {"plan"}, "sweep": set()}


def same_default(mlproject_default, click_default) -> bool:
    if isinstance(click_default, (int, float)) and not isinstance(click_default, bool):
        return float(mlproject_default) == pytest.approx(float(click_default))
    return str(mlproject_default) == str(click_default)


@pytest.mark.parametrize("entry_point", sorted(CLI_ONLY))
def test_parameters_match_cli_options_and_defaults(entry_point):
    parameters = ENTRY_POINTS[entry_point]["parameters"]
    command = cli.main.commands[entry_point]
    options = {p.name: p for p in command.params if p.name != "help"}
    names = {"model_uri": "model", "grid_file": "grid"}  # click's variable name -> parameter name
    by_parameter = {names.get(name, name): option for name, option in options.items()}
    assert set(parameters) == set(by_parameter) - CLI_ONLY[entry_point]
    for name, spec in parameters.items():
        option = by_parameter[name]
        if "default" not in spec:
            assert option.required, f"{name}: required in MLproject, optional in the CLI"
        else:
            assert same_default(spec["default"], option.default), name


@pytest.mark.parametrize("entry_point", sorted(CLI_ONLY))
def test_every_parameter_reaches_the_command(entry_point):
    command = ENTRY_POINTS[entry_point]["command"]
    for name in ENTRY_POINTS[entry_point]["parameters"]:
        assert f"--{name.replace('_', '-')} {{{name}}}" in command, name


@pytest.mark.parametrize("entry_point", sorted(CLI_ONLY))
def test_readme_table_lists_every_parameter_with_its_default(entry_point):
    table = readme_table(f"### `{entry_point}` parameters")
    parameters = ENTRY_POINTS[entry_point]["parameters"]
    assert set(table) == set(parameters)
    for name, spec in parameters.items():
        documented = table[name]
        if "default" not in spec:
            assert documented == "required", name
        elif spec["type"] == "float":
            assert float(documented) == pytest.approx(float(spec["default"])), name
        else:
            assert documented == (str(spec["default"]) or '""'), name


def test_help_and_option_checks_do_not_wait_for_tensorflow():
    """`edsr-mlflow --help` and a rejected option answer without importing TensorFlow (seconds)."""
    probe = ("import sys; from click.testing import CliRunner; from edsr_mlflow import cli; "
             "help = CliRunner().invoke(cli.main, ['train', '--help']); "
             "bad = CliRunner().invoke(cli.main, ['train', '--blocks', '0']); "
             "print(help.exit_code, bad.exit_code, repr(bad.output), 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0 2 'error: blocks must be a positive number, got 0\\n' False"


def test_what_keras_imports_for_nothing_is_hidden_only_while_tensorflow_loads():
    # A fresh process: here, the suite may have loaded them already (then nothing is hidden).
    probe = "\n".join([
        "import json",
        "from edsr_mlflow import cli",
        "with cli._hidden((*cli.UNUSED_BY_KERAS, 'json')):",
        "    import json  # already loaded: left alone",
        "    for name in ('sklearn', 'matplotlib.pyplot'):",
        "        try:",
        "            __import__(name)",
        "        except ImportError:",
        "            print('hidden', name)",
        "import matplotlib.pyplot, sklearn",
        "print('importable after')",
    ])
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["hidden sklearn", "hidden matplotlib.pyplot", "importable after"]
