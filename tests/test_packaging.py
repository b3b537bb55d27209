"""pyproject.toml and conda.yaml declare the same dependencies; CI runs the README's test command."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_pyproject_and_conda_dependencies_agree():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(map(normalise, pyproject["project"]["dependencies"])) == sorted(map(normalise, pip_section))


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci


def test_console_script_is_the_click_group():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["edsr-mlflow"] == "edsr_mlflow.cli:main"


def imported_top_level_modules(folder: Path) -> set[str]:
    """Top-level names of the absolute imports in every module of ``folder``, lazy ones included."""
    names = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__", "edsr_mlflow"}


def declared_distribution(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_package_the_code_imports_is_declared():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {declared_distribution(r) for r in pyproject["project"]["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in imported_top_level_modules(ROOT / "edsr_mlflow"):
        providers = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not providers & declared:
            undeclared[module] = sorted(providers)
    assert not undeclared, f"imported by edsr_mlflow but not in pyproject.toml's dependencies: {undeclared}"


def test_python_m_checks_for_every_declared_dependency():
    """``python -m edsr_mlflow`` names what a Python lacks before importing it: its list must
    hold every package the code imports, each provided by a declared distribution, and cover
    every declared distribution."""
    from edsr_mlflow.__main__ import REQUIRED_MODULES

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {declared_distribution(r) for r in pyproject["project"]["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    provider = {m: {d.lower().replace("_", "-") for d in distributions.get(m, [])} for m in REQUIRED_MODULES}
    assert imported_top_level_modules(ROOT / "edsr_mlflow") <= set(REQUIRED_MODULES)
    assert all(provider[m] & declared for m in REQUIRED_MODULES), provider
    assert declared <= set().union(*provider.values())
