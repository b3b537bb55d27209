"""``edsr-mlflow crops``: the textured window, the grid's rows and panels, the command end to end
and its one-line refusals."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edsr_mlflow import cli, crops, samples, schema
from edsr_mlflow.errors import DataError, UserError
from edsr_mlflow.images import bicubic_upscaler, make_pair

from helpers import SHARED_DATA, needs_shared_data, write_images

FLAT = 100


def flat_image(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), FLAT, dtype=np.uint8)


def checker(side: int) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side]
    return np.repeat((((yy + xx) % 2) * 255).astype(np.uint8)[..., None], 3, axis=2)


def brute_force_texture(image: np.ndarray, size: int) -> np.ndarray:
    """|dx| + |dy| of the luma between neighbours inside each window, window by window."""
    luma = image.astype(np.int64) @ samples.LUMA_WEIGHTS
    rows, cols = image.shape[0] - size + 1, image.shape[1] - size + 1
    texture = np.zeros((rows, cols), dtype=np.int64)
    for top in range(rows):
        for left in range(cols):
            window = luma[top : top + size, left : left + size]
            texture[top, left] = np.abs(np.diff(window, axis=1)).sum() + np.abs(np.diff(window, axis=0)).sum()
    return texture


# ---------------------------------------------------------------- the textured window


def test_a_checker_patch_on_a_flat_image_is_the_window_chosen():
    image = flat_image(60, 80)
    image[30:42, 50:62] = checker(12)
    assert samples.textured_crop_box(image, 12) == (30, 50, 42, 62)


def test_fine_stripes_win_over_a_single_strong_edge():
    image = flat_image(64, 96)
    image[:, 48:] = 255  # one step edge down the middle: strong, but once
    image[8:24, 4:20] = np.where(np.arange(16) % 2, 0, 255).astype(np.uint8)[None, :, None]  # 1-pixel stripes
    assert samples.textured_crop_box(image, 16) == (8, 4, 24, 20)


def test_equal_windows_tie_to_the_top_left():
    assert samples.textured_crop_box(flat_image(20, 30), 8) == (0, 0, 8, 8)
    image = flat_image(40, 40)
    image[24:32, 4:12] = checker(8)  # lower left
    image[4:12, 24:32] = checker(8)  # upper right: same texture, higher up
    assert samples.textured_crop_box(image, 8) == (4, 24, 12, 32)


@pytest.mark.parametrize("size", [1, 2, 5, 13])
def test_the_integral_images_agree_with_summing_each_window(size):
    image = np.random.default_rng(size).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    texture = brute_force_texture(image, size)
    top, left = np.unravel_index(np.argmax(texture), texture.shape)
    assert samples.textured_crop_box(image, size) == (top, left, top + size, left + size)


@pytest.mark.parametrize("size", [0, 14, 100])
def test_a_window_that_does_not_fit_is_refused(size):
    with pytest.raises(ValueError, match="does not fit a 20x13 image"):
        samples.textured_crop_box(flat_image(13, 20), size)


@needs_shared_data
@pytest.mark.parametrize(("name", "box"), [("barbara", (66, 1, 114, 49)), ("zebra", (15, 57, 63, 105))])
def test_set14_windows_are_in_the_cloth_and_the_stripes(name, box):
    """Regression of what the picker chose, seen in the grid: barbara's checked tablecloth,
    the zebra's stripes (x4 LR, 48 pixels)."""
    window = crops.textured_window(SHARED_DATA / "Set14" / f"{name}.png", 4, 48)
    assert window.box == box
    assert window.pair.lr_image.shape[:2] == {"barbara": (144, 180), "zebra": (97, 146)}[name]


# ---------------------------------------------------------------- the grid


def nearest(scale: int):
    return lambda lr_image: np.repeat(np.repeat(lr_image, scale, axis=0), scale, axis=1)


@pytest.fixture
def windows() -> list[samples.CropWindow]:
    rng = np.random.default_rng(3)
    pairs = [make_pair(name, rng.integers(0, 256, (h, w, 3), dtype=np.uint8), 2)
             for name, h, w in (("first", 40, 60), ("second", 48, 36))]
    return [samples.CropWindow(pairs[0], (2, 20, 10, 28)), samples.CropWindow(pairs[1], (0, 0, 8, 8))]


@pytest.mark.parametrize("zoom", [1, 3])
def test_rows_are_the_reference_then_one_per_upscaler_with_every_window(windows, zoom):
    upscalers = [(f"config_{i}", nearest(2)) for i in range(3)]
    rows = samples.crop_rows(windows, upscalers, 2, zoom=zoom)
    assert [title for title, _ in rows][1:] == ["config_0", "config_1", "config_2"]
    assert list(rows[0][1]) == ["first LR", "first HR", "second LR", "second HR"]
    for _, panels in rows[1:]:
        assert list(panels) == ["first bicubic", "first SR", "second bicubic", "second SR"]
    for _, panels in rows:
        assert all(panel.shape == (8 * 2 * zoom, 8 * 2 * zoom, 3) and panel.dtype == np.uint8 for panel in panels.values())
    top, left, bottom, right = windows[0].box
    hr_crop = windows[0].pair.hr_image[top * 2 : bottom * 2, left * 2 : right * 2]
    lr_crop = windows[0].pair.lr_image[top:bottom, left:right]
    np.testing.assert_array_equal(rows[0][1]["first HR"], nearest(zoom)(hr_crop))
    np.testing.assert_array_equal(rows[1][1]["first SR"], nearest(2 * zoom)(lr_crop))
    np.testing.assert_array_equal(rows[0][1]["first LR"], rows[1][1]["first SR"])  # nearest SR is the replicated LR


def test_bicubic_and_sr_see_the_context_around_the_window(windows):
    seen = []

    def recording(lr_image):
        seen.append(lr_image.shape[:2])
        return bicubic_upscaler(2)(lr_image)

    rows = samples.crop_rows(windows, [("recording", recording)], 2, context=4)
    assert seen == [(2 + 8 + 4, 4 + 8 + 2), (8 + 4, 8 + 4)]  # 4 pixels each side where the LR image has them
    whole = bicubic_upscaler(2)(windows[0].pair.lr_image)[2 * 2 : 10 * 2, 20 * 2 : 28 * 2]
    assert np.abs(rows[1][1]["first SR"].astype(int) - whole).max() <= 2  # the crop as in the whole image
    np.testing.assert_array_equal(rows[1][1]["first bicubic"], rows[1][1]["first SR"])


def test_the_grid_stacks_titled_labelled_rows(windows):
    grid = samples.crop_grid(windows, [("a", nearest(2)), ("b", nearest(2))], 2, zoom=2)
    panel, label, gap = 32, samples.LABEL_HEIGHT, 8
    assert grid.dtype == np.uint8
    assert grid.shape == (3 * (2 * label + panel) + 2 * gap, 4 * panel + 3 * 4, 3)
    rows = samples.crop_rows(windows, [("a", nearest(2)), ("b", nearest(2))], 2, zoom=2)
    for i, (_, panels) in enumerate(rows):
        top = i * (2 * label + panel + gap)
        assert grid[top : top + label].min() < 128  # the row's title
        assert grid[top + label : top + 2 * label].min() < 128  # its panels' labels
        np.testing.assert_array_equal(grid[top + 2 * label : top + 2 * label + panel, :panel], next(iter(panels.values())))


# ---------------------------------------------------------------- planning and the command


def test_the_default_images_are_set14s_barbara_and_zebra(tmp_path, monkeypatch):
    (tmp_path / "set14").mkdir()  # found whatever the folder's case, as evaluate finds it
    assert crops.default_image_paths(tmp_path) == [tmp_path / "set14" / "barbara.png", tmp_path / "set14" / "zebra.png"]
    monkeypatch.delenv("EDSR_BENCHMARK_ROOT", raising=False)
    with pytest.raises(UserError, match=r"name the images to crop \(--image PATH"):
        crops.default_image_paths(None)


def test_an_image_smaller_than_the_crop_is_refused(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(path)
    with pytest.raises(DataError, match=r"x2 LR image is 25x20 pixels, too small for a 24-pixel crop; pass --crop-size 20"):
        crops.textured_window(path, 2, 24)
    with pytest.raises(DataError, match="no such file"):
        crops.textured_window(tmp_path / "missing.png", 2, 8)


def run_cli(*args):
    return CliRunner().invoke(cli.main, ["crops", *args])


def assert_one_line_error(result, message: str) -> None:
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.output


def test_bad_crops_input_is_one_line(tracking_store, tmp_path, monkeypatch):
    monkeypatch.delenv("EDSR_BENCHMARK_ROOT", raising=False)
    image = write_images(tmp_path / "photos", count=1, size=64) / "img0.png"
    client = mlflow.MlflowClient()
    failed = client.create_experiment("failed_only")
    run_id = client.create_run(failed, tags={schema.KIND_TAG: schema.TRAIN}).info.run_id
    client.set_terminated(run_id, "FAILED")
    assert_one_line_error(run_cli("--experiment", "nope", "--image", str(image)), "experiment 'nope' does not exist")
    assert_one_line_error(run_cli("--experiment", "failed_only", "--image", str(image)),
                          "no FINISHED training run with its final metrics in experiment 'failed_only'")
    assert_one_line_error(run_cli("--experiment", "failed_only"), "name the images to crop (--image PATH")
    assert_one_line_error(run_cli("--image", str(image), "--output", str(tmp_path / "grid.txt")), "name the output with an image suffix")
    assert run_cli("--crop-size", "0").exit_code == 2  # click's own refusal


def test_bad_input_is_told_before_tensorflow_loads(tracking_store, tmp_path):
    probe = ("import atexit, runpy, sys; "
             "atexit.register(lambda: print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_FREE', file=sys.stderr)); "
             "sys.argv = ['edsr-mlflow', *sys.argv[1:]]; runpy.run_module('edsr_mlflow', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", probe, "crops", "--experiment", "nope", "--image", "x.png"],
                          cwd=tmp_path, capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3
    assert lines[-2].startswith("error: experiment 'nope' does not exist") and lines[-1] == "TF_FREE"


@pytest.mark.slow
def test_crops_draws_the_grid_of_a_trained_run(tracking_store, tiny_params, tmp_path):
    result = CliRunner().invoke(cli.main, ["train", *[f"--{k.replace('_', '-')}={v}" for k, v in tiny_params.items()]])
    assert result.exit_code == 0, result.output
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    photos = write_images(tmp_path / "photos", count=2, size=64)
    output = tmp_path / "grid.png"
    result = run_cli("--image", str(photos / "img0.png"), "--image", str(photos / "img1.png"), "--crop-size", "16",
                     "--output", str(output))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {output} (1 configurations x 2 images)\n"
    grid = np.asarray(Image.open(output))
    panel = 16 * 2 * 5  # 16 LR pixels at x2, magnified 5 times to reach 160
    assert grid.shape == (2 * (2 * samples.LABEL_HEIGHT + panel) + 8, 4 * panel + 3 * 4, 3)
    assert all(r.info.status == "FINISHED" for r in mlflow.search_runs(search_all_experiments=True, output_format="list"))
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == 1  # crops logs nothing

    assert_one_line_error(run_cli("--image", str(tmp_path / "missing.png")), "missing.png: no such file")
    assert_one_line_error(run_cli("--image", str(photos / "img0.png"), "--crop-size", "40"), "too small for a 40-pixel crop")
    assert_one_line_error(run_cli("--image", str(photos / "img0.png"), "--scale", "4"), "no x4 runs in any experiment")
    plan = crops.plan_textured_crops(None, None, [photos / "img0.png"], 16)
    assert list(plan.runs["run_id"]) == [run.info.run_id] and list(plan.runs["label"]) == ["edsr_x2_b1_f8_subpixel"]
