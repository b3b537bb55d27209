"""Bad input found by the adversarial pass of issue 10: one line, an exit code, and no run left
behind (or, where MLflow is the one that fails, a message that says what to do)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edsr_mlflow import cli, sources
from edsr_mlflow.errors import DataError

from helpers import copy_migrated_store, one_error_line


def invoke(*args):
    return CliRunner().invoke(cli.main, list(args))


def write_image(path: Path, size: tuple[int, int], flat: bool = False) -> Path:
    height, width = size
    rng = np.random.default_rng(height * 1000 + width)
    pixels = np.full((height, width, 3), 128, np.uint8) if flat else rng.integers(0, 256, (height, width, 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("scale, smallest", [(2, 8), (3, 6), (4, 5)])
def test_scored_images_must_fit_ssims_window_after_shaving(scale, smallest):
    # The HR side after shaving `scale` pixels at each border must be at least 11.
    assert sources.scored_min_lr_size(scale) == smallest
    assert smallest * scale - 2 * scale >= 11 > (smallest - 1) * scale - 2 * scale


def test_too_small_and_flat_validation_images_are_skipped_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "val"
    write_image(folder / "tiny.png", (14, 14))  # 7 px at x2: SSIM cannot be computed after shaving
    write_image(folder / "flat.png", (40, 40), flat=True)  # bicubic PSNR would be infinite
    write_image(folder / "good.png", (40, 48))
    pairs, info = sources.load_pairs(sources.directory_image_paths(folder), 2, 1, "val", scored=True)
    assert [p.name for p in pairs] == ["good.png"]
    assert "tiny.png" in caplog.text and "flat.png" in caplog.text
    write_image(folder / "good.png", (16, 16))  # 8 px at x2: the smallest that can be scored
    assert [p.name for p in sources.load_pairs(sources.directory_image_paths(folder), 2, 1, "val", scored=True)[0]] == ["good.png"]
    (folder / "good.png").unlink()
    with pytest.raises(DataError, match="no usable images"):
        sources.load_pairs(sources.directory_image_paths(folder), 2, 1, "val", scored=True)


def test_a_validation_folder_of_unscorable_images_fails_before_the_run(tracking_store, tmp_path):
    folder = tmp_path / "val"
    for i, size in enumerate([(8, 8), (14, 20), (28, 10)]):
        write_image(folder / f"small{i}.png", size)
    result = invoke("train", "--dataset=sample", f"--val-dataset={folder}", "--blocks=1", "--filters=4",
                    "--epochs=1", "--steps-per-epoch=1", "--patch-size=8", "--batch-size=2")
    one_error_line(result, "no usable images", "too small")
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


@pytest.mark.parametrize("output, fragment", [
    ("missing/out.png", "does not exist"),
    ("out", "image suffix"),
    ("in.png/out.png", "is a file, not a folder"),
    ("x" * 300 + ".png", "more than this file system allows"),
    ("in.png", "that is the input image"),
    ("./sub/../in.png", "that is the input image"),
    ("link.png", "that is the input image"),  # a symbolic link to the input
    ("hard.png", "that is the input image"),  # a hard link to it
])
def test_upscale_checks_its_output_path_before_any_work(tmp_path, monkeypatch, output, fragment):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "in.png", (10, 10))
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.png").symlink_to(tmp_path / "in.png")
    (tmp_path / "hard.png").hardlink_to(tmp_path / "in.png")
    before = (tmp_path / "in.png").read_bytes()
    result = invoke("upscale", "runs:/0123456789abcdef0123456789abcdef/model", "in.png", output)
    one_error_line(result, fragment)
    assert (tmp_path / "in.png").read_bytes() == before


def test_upscale_checks_it_may_write_into_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "in.png", (10, 10))
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr("os.access", lambda path, mode: Path(path).resolve() != locked)  # root may write anywhere
    one_error_line(invoke("upscale", "runs:/0123456789abcdef0123456789abcdef/model", "in.png", "locked/out.png"),
                   "cannot write into", "permission denied")


def test_overwriting_the_input_is_allowed_when_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "in.png", (10, 10))
    result = invoke("upscale", "runs:/0123456789abcdef0123456789abcdef/model", "in.png", "in.png", "--overwrite-input")
    assert "that is the input image" not in result.output  # past the path check: to the model lookup


@pytest.mark.parametrize("command", [["upscale", "runs:/x/model", "in.png", "out.png"], ["evaluate", "--model=bicubic", "--scale=2"]])
def test_negative_tiles_are_refused(command):
    result = invoke(*command, "--tile=-5")
    assert result.exit_code == 2
    assert "-5" in result.output and "below 0" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", [["upscale", "runs:/x/model", "in.png", "out.png"], ["evaluate", "--model=bicubic", "--scale=2"]])
def test_a_tile_too_small_to_pay_for_its_context_is_refused(command):
    result = invoke(*command, "--tile=1")
    assert result.exit_code == 2
    assert "1 is too small a tile: use 0 (whole image) or at least 32" in result.output and "Traceback" not in result.output


def test_a_half_created_sqlite_store_says_what_to_do(tmp_path, monkeypatch, migrated_store):
    """A first command killed while MLflow created its tables left a store on which every later
    command failed with a SQL error ("table ... already exists", "duplicate column")."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    copy_migrated_store(migrated_store, tmp_path / "mlflow.db")
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # as a cut-short migration leaves it
        db.execute("drop table alembic_version")
        db.execute("drop table webhooks")
    from mlflow.tracking._tracking_service import utils

    monkeypatch.setattr(utils, "_tracking_store_registry", type(utils._tracking_store_registry)())  # no cached store
    utils._tracking_store_registry.register("sqlite", utils._get_sqlalchemy_store)
    result = invoke("compare", "--output-dir=out")
    one_error_line(result, "half set up", f"mv {tmp_path / 'mlflow.db'}")


def test_a_refusal_of_the_tracking_server_is_one_line(tracking_store, monkeypatch):
    """HTTP 403 for a READ-only user of a shared server (issue 10): MLflow raises an exception
    with error code PERMISSION_DENIED from whichever call it refuses."""
    from mlflow.exceptions import MlflowException, get_error_code

    def refused(*args, **kwargs):
        raise MlflowException("API request to endpoint /api/2.0/mlflow/runs/create failed with error code 403 != 200. "
                              "Response body: 'Permission denied'", error_code=get_error_code(403))

    monkeypatch.setattr(mlflow, "start_run", refused)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    result = invoke("train", "--dataset=sample", "--blocks=1", "--filters=4", "--epochs=1", "--steps-per-epoch=1")
    line = one_error_line(result, "refused reader", "EDIT permission")
    assert result.exit_code == 3 and "403" in line


def test_evaluate_writes_first_so_a_refusal_comes_before_the_scoring(tracking_store, monkeypatch, tmp_path):
    from mlflow.exceptions import MlflowException, get_error_code

    # workflows imported before score_set is patched: imported while it is, workflows would bind
    # the patch for good (`from .evaluation import score_set`) and break later tests of the worker
    from edsr_mlflow import evaluation, model, model_logging, workflows

    keras_model = model.build_edsr(scale=2, blocks=1, filters=4)
    with mlflow.start_run() as run:
        model_logging.log_keras_model(keras_model)
        mlflow.log_param("scale", 2)
    write_image(tmp_path / "imgs" / "a.png", (40, 40))
    scored = []
    monkeypatch.setattr(evaluation, "score_set", lambda *a, **k: scored.append(1))
    monkeypatch.setattr(workflows, "score_set", lambda *a, **k: scored.append(1))

    def refused(self, *args, **kwargs):
        raise MlflowException("403 Permission denied", error_code=get_error_code(403))

    monkeypatch.setattr(mlflow.MlflowClient, "set_tag", refused)
    result = invoke("evaluate", f"--model=runs:/{run.info.run_id}/model", f"--dataset={tmp_path / 'imgs'}")
    one_error_line(result, "EDIT permission")
    assert scored == []


def test_python_without_the_dependencies_gets_one_line(tmp_path):
    """`mlflow run . --env-manager local` with the environment not activated runs the MLproject's
    `python -m edsr_mlflow` on a Python without TensorFlow (here: -S, no site-packages)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-S", "-m", "edsr_mlflow", "train", "--dataset", "sample"],
                            cwd=root, capture_output=True, text=True, timeout=60)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: this Python"), lines
    assert "tensorflow" in lines[0] and "source .venv/bin/activate" in lines[0] and "--env-manager uv" in lines[0]
