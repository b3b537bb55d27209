"""What a command leaves in the temporary folder: nothing, once it has ended."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile

import mlflow
import pytest
from click.testing import CliRunner

from edsr_mlflow import cli, model_logging
from edsr_mlflow.scratch import scratch_folder

from helpers import ROOT, cli_args, write_images


def test_the_scratch_folder_takes_what_tempfile_hands_out_and_goes(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with scratch_folder() as folder:
        made = tempfile.mkdtemp()
        with tempfile.NamedTemporaryFile(delete=False) as kept:
            kept.write(b"left behind")
        assert os.path.dirname(made) == os.path.dirname(kept.name) == str(folder)
    assert not folder.exists() and list(tmp_path.iterdir()) == []
    assert tempfile.tempdir == str(tmp_path)  # restored


def test_the_scratch_folder_goes_when_the_command_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RuntimeError), scratch_folder():
        tempfile.mkdtemp()
        raise RuntimeError("the command failed")
    assert list(tmp_path.iterdir()) == [] and tempfile.tempdir == str(tmp_path)


@pytest.mark.slow
def test_loading_a_logged_model_leaves_no_copy(tracking_store, tiny_params, tmp_path, monkeypatch):
    trained = CliRunner().invoke(cli.main, ["train", *cli_args(tiny_params)])
    assert trained.exit_code == 0, trained.output
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    uri = f"runs:/{run.info.run_id}/model"
    photos = write_images(tmp_path / "photos", count=2, size=24)

    # The library call: the copy it downloaded goes once the model is in memory.
    library_temp = tmp_path / "library-temp"
    library_temp.mkdir()
    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(library_temp))
        assert model_logging.load_keras_model(uri).count_params() > 0
    assert list(library_temp.iterdir()) == []

    # The commands, as a user runs them, with a temp folder of their own (MLflow, TensorFlow
    # Datasets and autograph write there too).
    command_temp = tmp_path / "command-temp"
    command_temp.mkdir()
    env = {**os.environ, "TMPDIR": str(command_temp)}
    for args in (["evaluate", f"--model={uri}", f"--dataset={photos}"],
                 ["upscale", uri, str(photos / "img0.png"), str(tmp_path / "img0_x2.png")]):
        done = subprocess.run([sys.executable, "-m", "edsr_mlflow", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert sorted(p.name for p in command_temp.iterdir()) == [], args[0]
    assert "eval_photos_psnr" in mlflow.get_run(run.info.run_id).data.metrics  # the model was loaded and used
    assert (tmp_path / "img0_x2.png").is_file()


def test_a_benchmarks_store_goes_when_it_ends(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("benchmarks_common", ROOT / "benchmarks" / "_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mine.db")
    with common.temporary_tracking_store() as folder:
        assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{folder / 'mlflow.db'}"
        (folder / "checkpoints").mkdir()
        tempfile.mkdtemp()  # a model download, say
    assert list(tmp_path.iterdir()) == []
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///mine.db"
