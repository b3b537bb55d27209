"""What several test modules share: the shared images' folder, CLI arguments, what a complete
training run holds, small image folders."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from edsr_mlflow import schema
from edsr_mlflow.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(
    not (SHARED_DATA / "Set5").is_dir(),
    reason=f"benchmark images not found at {SHARED_DATA} (Set5/Set14/SunHays80, see README)",
)


def copy_migrated_store(template: Path, db_path: Path, artifact_location: str | None = None) -> None:
    """``db_path`` as a fresh store would be if MLflow created it now: a copy of the migrated
    template whose Default experiment keeps its artifacts where MLflow would have put them:
    beside ``db_path`` (``<folder>/mlruns/0``) for a client, ``mlflow-artifacts:/0`` for an
    ``mlflow server --serve-artifacts`` (pass that as ``artifact_location``)."""
    shutil.copyfile(template, db_path)
    location = artifact_location or str(db_path.parent / "mlruns" / "0")
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (location,))
    db.close()


SERVED_ARTIFACTS = "mlflow-artifacts:/0"  # the Default experiment's artifacts on a server that serves them


def cli_args(params: dict) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in params.items()]


def all_runs():
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def assert_complete_training_run(run, config: TrainConfig):
    client = mlflow.MlflowClient()
    assert run.info.status == "FINISHED"
    assert run.info.run_name == config.run_name
    params = run.data.params
    assert TrainConfig.from_params(params) == config  # every parameter, as logged
    assert int(params["params_count"]) > 0 and int(params["macs_per_lr_pixel"]) > 0
    tags = run.data.tags
    assert tags["upsampler"] == config.upsampler and tags["blocks"] == str(config.blocks) and tags["scale"] == str(config.scale)
    assert len(tags.get("git_commit", "")) == 40 or "mlflow.source.git.commit" in tags or not (ROOT / ".git").exists()
    for metric in schema.EPOCH_METRICS:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
        assert steps == list(range(1, config.epochs + 1)), metric
    metrics = run.data.metrics
    for name in ("train_time_s", "best_val_psnr", "bicubic_val_psnr", "val_psnr_gain"):
        assert np.isfinite(metrics[name]), name
    assert metrics["val_psnr_gain"] == pytest.approx(metrics["val_psnr"] - metrics["bicubic_val_psnr"])
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)]
    assert metrics["loss_rise"] == pytest.approx(max([1.0] + [b / min(losses[:i + 1]) for i, b in enumerate(losses[1:])]))
    assert metrics["diverged"] == float(metrics["loss_rise"] > 2.0) and tags[schema.DIVERGED_TAG] == str(metrics["diverged"] == 1.0).lower()
    assert any(k.startswith("system/") for k in metrics), "system metrics"
    contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
    assert contexts == {"training", "validation"}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert artifacts, "visual samples"

    uri = f"runs:/{run.info.run_id}/model"
    lr_batch = np.random.default_rng(0).uniform(0, 255, (1, 13, 17, 3)).astype(np.float32)
    # MLflow leaves the copy it loads from where it downloaded it: in a folder that goes.
    with tempfile.TemporaryDirectory() as keras_copy, tempfile.TemporaryDirectory() as pyfunc_copy:
        keras_model = mlflow.keras.load_model(uri, dst_path=keras_copy)
        assert keras_model.predict(lr_batch, verbose=0).shape == (1, 13 * config.scale, 17 * config.scale, 3)
        pyfunc_model = mlflow.pyfunc.load_model(uri, dst_path=pyfunc_copy)
        assert pyfunc_model.predict(lr_batch).shape == (1, 13 * config.scale, 17 * config.scale, 3)


def write_images(folder: Path, count: int = 3, size: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        smooth = 120 + 80 * np.sin((xx + 3 * i) / 6.0)[..., None] * np.cos(yy / 9.0)[..., None]
        image = np.clip(smooth + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"img{i}.png")
    return folder


def one_error_line(result, *fragments: str, exit_code: int | None = None) -> str:
    """The one line a refused command printed (``error: ...``), checked to hold ``fragments``;
    an exit code for the user's mistake (``exit_code`` if given; never 0, nor 1, an uncaught
    exception's), never a traceback."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code not in (0, 1), result.output
    assert exit_code is None or result.exit_code == exit_code, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
