"""A logged model stands alone: loaded with ``mlflow.pyfunc.load_model`` and served by
``mlflow models serve --env-manager local`` in processes that cannot import ``edsr_mlflow``
(issue 11). Each compares the answer with the in-process Keras model's, rounded as ``upscale``
rounds."""

from __future__ import annotations

import ast
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import requests

from edsr_mlflow import edsr_pyfunc, model, model_logging, workflows
from edsr_mlflow.config import TrainConfig

from servers import free_port, stop_mlflow_server

# Loads the model as a pyfunc and upscales batch.npy into sr.npy; run where edsr_mlflow cannot be imported.
PYFUNC_PROBE = """
import sys
import mlflow, numpy as np
try:
    import edsr_mlflow
    sys.exit("edsr_mlflow is importable here: the probe proves nothing")
except ImportError:
    pass
sr_batch = mlflow.pyfunc.load_model(sys.argv[1]).predict(np.load("batch.npy"))
np.save("sr.npy", sr_batch)
"""


@pytest.fixture
def trained(tracking_store, tiny_params) -> workflows.TrainOutcome:
    return workflows.train_run(TrainConfig(**tiny_params))


def without_edsr_mlflow(folder: Path) -> dict[str, str]:
    """The environment of a process that cannot import edsr_mlflow (installed editable in this
    venv, so leaving the repository off PYTHONPATH is not enough): a sitecustomize that blocks
    it, in every Python process started with this environment, the server's workers included."""
    blocker = folder / "block_edsr_mlflow"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['edsr_mlflow'] = None\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # `mlflow models serve --env-manager local` starts `uvicorn` by name: this venv's, as activated.
    env.update(PYTHONPATH=str(blocker), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


def lr_batch(count: int, height: int = 13, width: int = 17) -> np.ndarray:
    return np.random.default_rng(3).uniform(0, 255, (count, height, width, 3)).astype(np.float32)


def in_process_sr(outcome: workflows.TrainOutcome, batch: np.ndarray) -> np.ndarray:
    return edsr_pyfunc.to_uint8(keras.ops.convert_to_numpy(outcome.result.model(batch, training=False)))


def assert_same_images(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal, but for the rare value that float32 noise moves across a rounding boundary."""
    assert actual.shape == expected.shape and actual.dtype == np.uint8
    differ = actual.astype(int) != expected.astype(int)
    assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 1 and differ.mean() < 1e-3, f"{differ.sum()} values differ"


def test_the_shipped_modules_import_only_keras_numpy_mlflow_and_the_standard_library():
    """mlflow: only to refuse bad input as MLflow's scoring server expects, in the pyfunc that
    MLflow itself loads."""
    package = Path(edsr_pyfunc.__file__).parent
    for module in model_logging.SHIPPED_MODULES:
        for node in ast.walk(ast.parse((package / f"{module}.py").read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module}: a relative import fails in the model's code/ folder"
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            tops = {name.split(".")[0] for name in names}
            assert tops <= {"keras", "numpy", "tensorflow", "mlflow"} | set(sys.stdlib_module_names), f"{module} imports {tops}"


def test_a_saved_model_loads_as_a_pyfunc_and_passes_the_projects_own_checks(tmp_path):
    net = model.build_edsr(scale=2, blocks=1, filters=4, upsampler="bilinear")
    model_logging.save_standalone_model(str(tmp_path / "model"), keras_model=net)
    assert sorted(p.name for p in (tmp_path / "model" / "code").iterdir()) == sorted(f"{m}.py" for m in model_logging.SHIPPED_MODULES)
    assert model_logging.logged_keras_file(tmp_path / "model") == tmp_path / "model" / "data" / "model.keras"
    batch = lr_batch(2, 6, 5)
    sr_batch = mlflow.pyfunc.load_model(str(tmp_path / "model")).predict(batch)
    np.testing.assert_array_equal(sr_batch, edsr_pyfunc.to_uint8(keras.ops.convert_to_numpy(net(batch))))


@pytest.mark.parametrize("bad, problem", [
    (lambda batch: batch.__setitem__((0, 2, 3, 1), np.nan), "1 pixel values are not finite numbers"),
    (lambda batch: batch.__setitem__((0, 0, 0, 0), np.inf), "1 pixel values are not finite numbers"),
    (lambda batch: batch.__setitem__((0, 0, 0, 0), 300.0), "pixel values must lie in 0..255"),
])
def test_the_pyfunc_refuses_what_is_no_image_rather_than_answer_black_pixels(tmp_path, bad, problem):
    from mlflow.exceptions import MlflowException

    model_logging.save_standalone_model(str(tmp_path / "model"), keras_model=model.build_edsr(scale=2, blocks=1, filters=4))
    batch = lr_batch(1, 8, 8)
    bad(batch)
    with pytest.raises(MlflowException, match=problem) as refused:
        mlflow.pyfunc.load_model(str(tmp_path / "model")).predict(batch)
    assert refused.value.get_http_status_code() == 400


def test_the_pyfunc_tiles_large_images_and_refuses_those_over_its_limit(tmp_path):
    from mlflow.exceptions import MlflowException

    net = model.build_edsr(scale=2, blocks=1, filters=4)
    model_logging.save_standalone_model(str(tmp_path / "model"), keras_model=net)
    whole = edsr_pyfunc.to_uint8(keras.ops.convert_to_numpy(net(lr_batch(2, 70, 90))))
    # 70x90 LR in 32x32 tiles (16 pixels of context: the receptive field of one block and more)
    tiled = mlflow.pyfunc.load_model(str(tmp_path / "model"), model_config={"tile": 32}).predict(lr_batch(2, 70, 90))
    assert_same_images(tiled, whole)
    limited = mlflow.pyfunc.load_model(str(tmp_path / "model"), model_config={"max_pixels": 6299})
    with pytest.raises(MlflowException, match="an image of 90x70 = 6,300 pixels is over this model's limit of 6,299"):
        limited.predict(lr_batch(1, 70, 90))


@pytest.mark.slow
def test_the_logged_model_loads_as_a_pyfunc_without_edsr_mlflow(trained, tmp_path):
    batch = lr_batch(2)
    np.save(tmp_path / "batch.npy", batch)
    probe = subprocess.run(
        [sys.executable, "-c", PYFUNC_PROBE, f"runs:/{trained.run_id}/model"],
        cwd=tmp_path, env=without_edsr_mlflow(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    scale = trained.config.scale
    sr_batch = np.load(tmp_path / "sr.npy")
    assert sr_batch.shape == (2, 13 * scale, 17 * scale, 3)
    assert_same_images(sr_batch, in_process_sr(trained, batch))


@pytest.mark.slow
def test_mlflow_models_serve_answers_upscaled_images_over_http(trained, tmp_path):
    port = free_port()
    log_file = tmp_path / "serve.log"
    with open(log_file, "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"runs:/{trained.run_id}/model",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path, env={**without_edsr_mlflow(tmp_path), "MLFLOW_PYFUNC_INFERENCE_CONFIG": '{"max_pixels": 300}'},
            stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it stops uvicorn too
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a hang guard, not a speed test
        while not _answers(f"{url}/ping"):
            assert server.poll() is None, f"mlflow models serve exited with {server.returncode}: {log_file.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no /ping answer in 3 minutes: {log_file.read_text()[-3000:]}"
            time.sleep(0.5)
        batch = lr_batch(1)
        answer = requests.post(f"{url}/invocations", json={"inputs": batch.tolist()}, timeout=120)
        assert answer.status_code == 200, answer.text[:1000]
        predictions = np.asarray(answer.json()["predictions"])
        nan_pixel = batch.tolist()
        nan_pixel[0][2][3][1] = None  # JSON has no NaN: null is how a client sends one
        refused = requests.post(f"{url}/invocations", json={"inputs": nan_pixel}, timeout=120)
        too_large = requests.post(f"{url}/invocations", json={"inputs": lr_batch(1, 20, 16).tolist()}, timeout=120)
    finally:
        stop_mlflow_server(server)
    assert predictions.dtype.kind == "i" and predictions.min() >= 0 and predictions.max() <= 255  # pixel values
    scale = trained.config.scale
    assert predictions.shape == (1, 13 * scale, 17 * scale, 3)
    assert_same_images(predictions.astype(np.uint8), in_process_sr(trained, batch))
    assert refused.status_code == 400 and "not finite numbers" in refused.text, refused.text[:1000]
    assert too_large.status_code == 400 and "over this model's limit of 300" in too_large.text, too_large.text[:1000]


def _answers(url: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(url, timeout=2).ok
    return False
