"""`evaluate` and `upscale`: bicubic numbers, logging to the training run, tiling, errors."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edsr_mlflow import cli, data, metrics
from edsr_mlflow.evaluation import score_set
from edsr_mlflow.images import bicubic_upscaler
from edsr_mlflow.inference import model_upscaler
from edsr_mlflow.model import build_edsr

from helpers import SHARED_DATA, needs_shared_data, write_images


def run_cli(*args):
    return CliRunner().invoke(cli.main, list(args))


@pytest.fixture
def trained_run(tracking_store, tiny_params):
    result = run_cli("train", *[f"--{k.replace('_', '-')}={v}" for k, v in tiny_params.items()])
    assert result.exit_code == 0, result.output
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return run


@needs_shared_data
def test_bicubic_baseline_matches_the_published_numbers(tracking_store):
    result = run_cli("evaluate", "--model=bicubic", "--scale=2", "--dataset=set5,set14", f"--benchmark-root={SHARED_DATA}")
    assert result.exit_code == 0, result.output
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED" and run.data.tags["edsr_mlflow.kind"] == "evaluate"
    assert run.data.metrics["eval_set5_psnr"] == pytest.approx(33.67, abs=0.02)
    assert run.data.metrics["eval_set14_psnr"] == pytest.approx(30.33, abs=0.02)
    assert run.data.metrics["eval_set5_gain"] == 0.0


@pytest.mark.slow
def test_evaluate_logs_to_the_training_run(trained_run, tmp_path):
    folder = write_images(tmp_path / "my_photos")
    uri = f"runs:/{trained_run.info.run_id}/model"
    result = run_cli("evaluate", f"--model={uri}", f"--dataset={folder}", "--tile=32")
    assert result.exit_code == 0, result.output
    run = mlflow.get_run(trained_run.info.run_id)
    assert run.info.status == "FINISHED"  # evaluating does not reopen the training run
    metrics = run.data.metrics
    for suffix in ("psnr", "ssim", "gain", "bicubic_psnr", "ms_per_mp"):
        assert np.isfinite(metrics[f"eval_my_photos_{suffix}"]), suffix
    assert metrics["eval_my_photos_gain"] == pytest.approx(metrics["eval_my_photos_psnr"] - metrics["eval_my_photos_bicubic_psnr"])
    tables = [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "eval")]
    assert tables == ["eval/my_photos_x2.csv"]

    result = run_cli("evaluate", f"--model={uri}", f"--dataset={folder}", "--self-ensemble=true")
    assert result.exit_code == 0, result.output
    assert "eval_my_photos_se_psnr" in mlflow.get_run(trained_run.info.run_id).data.metrics

    output = tmp_path / "out.png"
    result = run_cli("upscale", uri, str(folder / "img0.png"), str(output))
    assert result.exit_code == 0, result.output
    assert Image.open(output).size == (96, 96)


@needs_shared_data
def test_tiled_inference_scores_like_whole_images_on_set14():
    _, pairs = data.load_eval_set("set14", 2, SHARED_DATA)
    model = build_edsr(2, blocks=4, filters=16)
    whole = score_set(model_upscaler(model), pairs, 2)
    tiled = score_set(model_upscaler(model, tile=64), pairs, 2)
    assert abs(whole.psnr - tiled.psnr) < 0.01


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=bicubic", "--dataset=set5"], "needs --scale"),
        (["--model=bicubic", "--scale=2", "--dataset=nosuchset"], "unknown evaluation dataset"),
        (["--model=bicubic", "--scale=2", "--dataset=set5", "--benchmark-root=/nowhere"], "not found"),
        (["--model=runs:/0123456789abcdef/model", "--dataset=set5"], "not found"),
        (["--model=bicubic", "--scale=5", "--dataset=set5"], "unsupported scale"),
    ],
)
def test_bad_evaluate_input_is_one_line(tracking_store, monkeypatch, args, message):
    monkeypatch.delenv("EDSR_BENCHMARK_ROOT", raising=False)
    result = run_cli("evaluate", *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("error:")] != [], result.output
    assert len([line for line in result.output.splitlines() if not line.startswith("20")]) == 1, result.output  # MLflow's dated INFO lines aside
    assert all(r.info.status != "RUNNING" for r in mlflow.search_runs(search_all_experiments=True, output_format="list"))


def test_the_papers_rgb_protocol_is_named_in_its_keys(tracking_store, tmp_path):
    folder = write_images(tmp_path / "photos", size=64)
    result = run_cli("evaluate", "--model=bicubic", "--scale=2", f"--dataset={folder}", "--protocol=rgb_paper")
    assert result.exit_code == 0, result.output
    assert "protocol rgb_paper: PSNR and SSIM on RGB, border shave = scale + 6" in result.output

    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    _, pairs = data.load_eval_set(str(folder), 2)
    bicubic = bicubic_upscaler(2)
    expected = np.mean([metrics.psnr(p.hr_image, bicubic(p.lr_image), shave=8, channel="rgb") for p in pairs])
    assert run.data.metrics["eval_photos_rgb_paper_psnr"] == pytest.approx(expected, abs=1e-9)
    assert "eval_photos_psnr" not in run.data.metrics  # never under the Y protocol's key
    y_protocol = np.mean([metrics.psnr(p.hr_image, bicubic(p.lr_image), shave=2, channel="y") for p in pairs])
    assert abs(expected - y_protocol) > 0.1  # the two protocols really differ on these images
    tables = [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "eval")]
    assert tables == ["eval/photos_x2_rgb_paper.csv"]
