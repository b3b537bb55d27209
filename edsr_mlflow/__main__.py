"""``python -m edsr_mlflow`` is the ``edsr-mlflow`` command (used by the MLproject).

The MLproject's commands start ``python`` from PATH. Under ``mlflow run --env-manager local``
without the project's environment activated, that is a Python without TensorFlow: say so in one
line, with what to do, instead of a traceback from deep inside a command.
"""

import importlib.util
import sys

# The import names of pyproject.toml's dependencies (tests/test_packaging.py keeps them in step).
REQUIRED_MODULES = (
    "click", "importlib_resources", "keras", "matplotlib", "mlflow", "numpy", "pandas", "PIL",
    "psutil", "requests", "scipy", "skimage", "statsmodels", "tensorflow", "tensorflow_datasets", "yaml",
)


def missing_modules(names=REQUIRED_MODULES) -> list[str]:
    """The names in ``names`` this Python cannot import (found without importing them)."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def missing_modules_message(missing: list[str], python: str) -> str:
    return (
        f"error: this Python ({python}) lacks {', '.join(missing)}, which edsr-mlflow needs: "
        "activate the project's environment first (make setup; source .venv/bin/activate), "
        "or let MLflow build one (mlflow run . --env-manager uv)"
    )


if __name__ == "__main__":
    if missing := missing_modules():
        print(missing_modules_message(missing, sys.executable), file=sys.stderr)
        sys.exit(2)
    from edsr_mlflow.cli import main

    main()
