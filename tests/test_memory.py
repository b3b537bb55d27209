"""The memory an upscale needs, from the image's header: the tile it runs with, or one line
before a pixel is decoded."""

from __future__ import annotations

import io
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edsr_mlflow import cli, edsr_pyfunc, images, memory
from edsr_mlflow.errors import DataError

from helpers import one_error_line

GB = 10**9


def test_the_estimate_by_hand():
    # 1000 x 500 LR at x2, 100 feature bytes per LR pixel: 7 B decoding + 12 B of uint8 output
    # per LR pixel, and twice the features of what the model sees at once.
    assert memory.WORKING_SET_FACTOR == 2.0
    assert memory.upscale_bytes(1000, 500, 2, 0, 100.0) == 500_000 * (7 + 12 + 200)
    assert memory.upscale_bytes(1000, 500, 2, 256, 100.0) == 500_000 * 19 + (256 + 32) ** 2 * 200
    assert memory.upscale_bytes(100, 50, 2, 256, 100.0) == 5_000 * (19 + 200)  # a tile larger than the image


def test_small_images_run_whole_large_ones_in_the_largest_tile_that_fits():
    assert memory.plan_upscale(500, 500, 2, None, 400.0, 8 * GB).tile == 0
    assert memory.plan_upscale(9000, 9000, 2, None, 400.0, 8 * GB).tile == 256
    # the 81-megapixel PNG of the issue at x2: 0.57 GB decoding + 0.97 GB output + a tile
    plan = memory.plan_upscale(9000, 9000, 2, None, 10_000.0, int(1.8 * GB))
    assert plan.tile == 64 and plan.estimated_bytes <= 1.8 * GB
    assert memory.plan_upscale(9000, 9000, 2, 512, 400.0, 8 * GB).tile == 512  # asked for: kept


def test_what_cannot_fit_is_one_line_with_the_size_the_estimate_and_the_tile_that_would():
    with pytest.raises(DataError) as whole:
        memory.plan_upscale(9000, 9000, 2, 0, 400.0, 8 * GB, image_name="big.png")
    message = str(whole.value)
    assert "big.png (9000x9000, x2: 324 megapixels out) needs about 66.3 GB with the whole image" in message
    assert "more than the 8.0 GB available; pass --tile 256 (about 1.6 GB)" in message and "\n" not in message
    with pytest.raises(DataError, match=r"needs about 4.5 GB with tiles of 64, more than the 2.0 GB available; crop or split"):
        memory.plan_upscale(9000, 9000, 4, None, 400.0, 2 * GB, image_name="big.png")


def test_png_rows_decode_to_the_image(tmp_path):
    rng = np.random.default_rng(5)
    for shape in [(1, 1, 3), (5, 7, 3), (300, 257, 3)]:
        image = rng.integers(0, 256, shape).astype(np.uint8)
        buffer = io.BytesIO()
        images.write_png_rows(image, buffer, rows_per_strip=64)
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")), image)


@pytest.fixture
def logged_model_uri(tracking_store):
    from edsr_mlflow import model, model_logging

    with mlflow.start_run() as run:
        model_logging.log_keras_model(model.build_edsr(scale=2, blocks=1, filters=4))
    return f"runs:/{run.info.run_id}/model"


def test_an_image_too_large_for_the_memory_is_refused_before_it_is_decoded(logged_model_uri, tmp_path, monkeypatch):
    Image.new("RGB", (3000, 2000), (40, 90, 200)).save(tmp_path / "flat.png")  # 11 KB on disk
    decoded = []
    monkeypatch.setattr(images, "load_rgb", lambda path: decoded.append(path))
    monkeypatch.setattr("psutil.virtual_memory", lambda: SimpleNamespace(available=50 * 10**6))
    result = CliRunner().invoke(cli.main, ["upscale", logged_model_uri, str(tmp_path / "flat.png"), str(tmp_path / "out.png")])
    line = one_error_line(result, "flat.png (3000x2000, x2: 24 megapixels out) needs about", "more than the 0.1 GB available")
    assert "crop or split the image first" in line
    assert decoded == [] and not (tmp_path / "out.png").exists()


def test_a_large_image_is_tiled_by_itself(logged_model_uri, tmp_path, monkeypatch):
    from edsr_mlflow import workflows

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (600, 700, 3)).astype(np.uint8)).save(tmp_path / "in.png")
    tiles = []
    workflows.upscale_file(logged_model_uri, tmp_path / "in.png", tmp_path / "out.png", progress=lambda done, total: tiles.append(total))
    assert Image.open(tmp_path / "out.png").size == (1400, 1200)
    assert tiles and tiles[-1] == len(edsr_pyfunc.tile_boxes(600, 700, 256))
