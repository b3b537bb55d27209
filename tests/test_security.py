"""What a hostile store or grid file cannot do: run code through a logged model, inject into a
search filter. Each case here once got through (issue 10)."""

from __future__ import annotations

from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from edsr_mlflow import cli, model, model_logging

from helpers import one_error_line


def plant_model(run_id: str, folder: Path, flavor: dict, build) -> str:
    """Logs a folder holding an MLmodel with ``flavor`` and whatever ``build(folder)`` writes
    as the run's ``model`` artifact; returns its URI."""
    folder.mkdir()
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": {"keras": flavor}, "run_id": run_id}))
    build(folder)
    mlflow.MlflowClient().log_artifacts(run_id, str(folder), "model")
    return f"runs:/{run_id}/model"


@pytest.fixture
def run_id(tracking_store):
    return mlflow.MlflowClient().create_run("0").info.run_id


@pytest.fixture
def lr_png(tmp_path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(np.full((12, 10, 3), 90, np.uint8)).save(path)
    return path


def exported_graph_that_writes(marker: Path):
    """A TensorFlow SavedModel whose call writes ``marker``: what ``save_exported_model: true``
    made mlflow.keras hand to ``tf.saved_model.load`` and the project then call."""
    import tensorflow as tf

    def build(folder: Path) -> None:
        class Planted(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
            def __call__(self, x):
                tf.io.write_file(str(marker), "planted")
                return tf.image.resize(x, tf.shape(x)[1:3] * 2)

        (folder / "data").mkdir()
        tf.saved_model.save(Planted(), str(folder / "data" / "model"))

    return build


@pytest.mark.parametrize("command", ["upscale", "evaluate"])
def test_an_exported_graph_in_a_run_is_refused_before_it_runs(command, run_id, tmp_path, lr_png):
    marker = tmp_path / "planted.txt"
    uri = plant_model(run_id, tmp_path / "planted", {"data": "data", "save_exported_model": True, "keras_version": keras.__version__},
                      exported_graph_that_writes(marker))
    mlflow.MlflowClient().log_param(run_id, "scale", "2")
    if command == "upscale":
        arguments = ["upscale", uri, str(lr_png), str(tmp_path / "out.png")]
    else:
        folder = tmp_path / "imgs"
        folder.mkdir()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)).save(folder / "a.png")
        arguments = ["evaluate", f"--model={uri}", f"--dataset={folder}"]
    result = CliRunner().invoke(cli.main, arguments)
    line = one_error_line(result)
    assert "exported TensorFlow graph" in line and "refusing" in line
    assert not marker.exists()
    assert not (tmp_path / "out.png").exists()


def test_a_lambda_layer_is_refused_by_safe_mode(run_id, tmp_path, lr_png):
    def build(folder: Path) -> None:
        inputs = keras.Input((None, None, 3))
        outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
        (folder / "data").mkdir()
        keras.Model(inputs, outputs).save(folder / "data" / "model.keras")

    uri = plant_model(run_id, tmp_path / "lambda", {"data": "data", "save_exported_model": False}, build)
    line = one_error_line(CliRunner().invoke(cli.main, ["upscale", uri, str(lr_png), str(tmp_path / "out.png")]))
    assert "safe mode" in line


@pytest.mark.parametrize("flavor, reason", [
    ({"data": "../../elsewhere"}, "points at"),
    ({"data": "data"}, "no data/model.keras"),
])
def test_other_model_layouts_are_refused(flavor, reason, run_id, tmp_path):
    uri = plant_model(run_id, tmp_path / "odd", flavor, lambda folder: None)
    with pytest.raises(Exception) as error:
        model_logging.load_keras_model(uri)
    assert reason in str(error.value)


def test_a_model_without_keras_flavour_is_refused(run_id, tmp_path):
    folder = tmp_path / "pyfunc"
    folder.mkdir()
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": {"python_function": {"loader_module": "os"}}}))
    mlflow.MlflowClient().log_artifacts(run_id, str(folder), "model")
    with pytest.raises(Exception) as error:
        model_logging.load_keras_model(f"runs:/{run_id}/model")
    assert "not a Keras model" in str(error.value)


def test_the_models_this_project_logs_still_load(run_id, tmp_path):
    net = model.build_edsr(scale=2, blocks=1, filters=4, upsampler="bilinear")
    with mlflow.start_run(run_id=run_id):
        model_logging.log_keras_model(net)
    loaded = model_logging.load_keras_model(f"runs:/{run_id}/model")
    x = np.random.default_rng(1).uniform(0, 255, (1, 6, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(net(x)))


# ---------------------------------------------------------------- filter strings


INJECTION = "rtfail' and attributes.status = 'FINISHED"


def test_a_sweep_name_that_would_inject_into_a_filter_is_refused(tmp_path):
    from edsr_mlflow import grid

    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump({"name": INJECTION, "grid": {"blocks": [1]}, "fixed": {"dataset": "sample"}}))
    result = CliRunner().invoke(cli.main, ["sweep", f"--grid={grid_file}"])
    line = one_error_line(result)
    assert "name" in line and "letters, digits" in line
    with pytest.raises(Exception, match="must start with a letter"):
        grid.load_sweep(grid_file)


@pytest.mark.parametrize("value", [INJECTION, "a'b", "x or 1=1", "", "a\\'"])
def test_filter_values_with_quotes_or_operators_never_reach_a_query(value, tracking_store):
    from edsr_mlflow import run_store
    from edsr_mlflow.errors import UserError

    with pytest.raises(UserError, match="cannot be searched for"):
        run_store.sweep_parent_ids(value, "0")
    with pytest.raises(UserError, match="cannot be searched for"):
        run_store.filter_literal(value)
    if value:  # an empty parent id means "no such filter"
        with pytest.raises(UserError, match="cannot be searched for"):
            run_store.training_filter(value)
