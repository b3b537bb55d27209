"""``edsr-mlflow crops``: which runs, images and windows the textured crop grid shows (no TensorFlow).

``compare``'s ``sample_crops.png`` shows what each run logged: the centre of a hold-out photo,
mostly smooth, where upsamplers hardly differ. This grid cuts the most textured window
(:func:`samples.textured_crop_box`) of images chosen for detail (Set14's barbara and zebra by
default) and runs each configuration's representative model on it (the seed nearest the
configuration's mean validation PSNR, as ``compare``'s curves). Planning queries the store and
reads the images in a second, so bad input is told before TensorFlow loads; running the models
is :func:`workflows.textured_crop_grid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import findings, images, run_store, tracking
from .errors import DataError, NothingToCompare, UserError
from .samples import CropWindow, textured_crop_box

# (benchmark set, file) of the default images: cloth and stripes, the detail upsamplers differ on.
DEFAULT_IMAGES = (("set14", "barbara.png"), ("set14", "zebra.png"))
PANEL_SIDE = 160  # HR pixels: smaller crops are magnified by a whole factor to at least this


@dataclass(frozen=True)
class CropPlan:
    """What the grid shows: ``runs`` (columns ``run_id``, ``label``: one representative run per
    configuration, :func:`findings.representative_runs`), the textured ``windows`` of the images
    at ``scale``, and ``zoom``, the panels' magnification."""

    scale: int
    zoom: int
    runs: pd.DataFrame
    windows: list[CropWindow]


def default_image_paths(benchmark_root: str | Path | None) -> list[Path]:
    """Set14's barbara and zebra under the benchmark root (argument, else ``$EDSR_BENCHMARK_ROOT``)."""
    if images.benchmark_root(benchmark_root) is None:
        raise UserError(f"name the images to crop (--image PATH, repeatable), or pass --benchmark-root (or set "
                        f"{images.BENCHMARK_ROOT_ENV}) for Set14's {' and '.join(name for _, name in DEFAULT_IMAGES)}")
    return [Path(images.resolve_eval_source(dataset, benchmark_root)[1]) / name for dataset, name in DEFAULT_IMAGES]


def plan_textured_crops(experiment: str | None, parent_run_id: str | None, image_paths: list[Path], crop_size: int,
                        scale: int = 0) -> CropPlan:
    """One representative FINISHED training run per configuration of ``experiment`` and/or the
    children of ``parent_run_id`` (as ``compare`` scopes them), and the textured window of side
    ``crop_size`` (LR pixels) of each image's LR version (evaluation's: HR cropped to a multiple
    of the scale, MATLAB-like bicubic downscaling). ``scale`` 0: the runs' one scale.

    Raises:
        TrackingError: the store is unreachable, the experiment or parent run unknown;
        NothingToCompare: no run there can be shown; UserError: runs of several scales and no
        ``scale``; DataError: an image is missing, unreadable or smaller than the crop.
    """
    uri = tracking.check_tracking_server()
    scope = run_store.comparison_scope(experiment, parent_run_id)
    runs = run_store.training_runs(scope)
    usable, _ = findings.split_runs(findings.tidy_runs(runs))
    if usable.empty:
        raise NothingToCompare(f"no FINISHED training run with its final metrics in {scope.description} of {uri} "
                               f"({len(runs)} training runs in all); train some, or pass another --experiment / --parent-run-id")
    scales = sorted(usable["scale"].unique())
    if scale and scale not in scales:
        raise UserError(f"no x{scale} runs in {scope.description}; its runs are x{', x'.join(map(str, scales))}")
    if not scale and len(scales) > 1:
        raise UserError(f"{scope.description} holds runs of scales x{', x'.join(map(str, scales))}; pick one with --scale")
    scale = scale or int(scales[0])
    chosen = findings.representative_runs(usable[usable["scale"] == scale])
    windows = [textured_window(path, scale, crop_size) for path in image_paths]
    zoom = -(-PANEL_SIDE // (crop_size * scale))  # rounded up
    return CropPlan(scale, zoom, chosen[["run_id", "label"]].reset_index(drop=True), windows)


def textured_window(path: Path, scale: int, crop_size: int) -> CropWindow:
    """The most textured ``crop_size`` window of the LR version of the image at ``path``,
    named by the file's stem."""
    pair = images.make_pair(Path(path).stem, images.load_rgb(path), scale)
    height, width = pair.lr_image.shape[:2]
    if crop_size > min(height, width):
        raise DataError(f"{path}: its x{scale} LR image is {width}x{height} pixels, too small for a {crop_size}-pixel crop; "
                        f"pass --crop-size {min(height, width)} or less")
    return CropWindow(pair, textured_crop_box(pair.lr_image, crop_size))
