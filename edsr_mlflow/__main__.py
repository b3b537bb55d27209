"""``python -m edsr_mlflow`` is the ``edsr-mlflow`` command (used by the MLproject)."""

from .cli import main

main()
