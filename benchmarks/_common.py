"""Shared set-up for the benchmark scripts: where the images are, a throw-away tracking store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SHARED_DATA = Path(os.environ.get("EDSR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def require_shared_data() -> Path:
    if not (SHARED_DATA / "SunHays80").is_dir():
        raise SystemExit(f"benchmark images not found in {SHARED_DATA}; set EDSR_SHARED_DATA to the folder holding SunHays80/ and Set5/")
    return SHARED_DATA


def temporary_tracking_store() -> Path:
    """Points MLflow at a fresh SQLite store in a temp folder; returns that folder."""
    folder = Path(tempfile.mkdtemp(prefix="edsr-bench-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    return folder
