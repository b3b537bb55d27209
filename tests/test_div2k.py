"""DIV2K, the default dataset, through the real TFDS `div2k` builder: tiny zips with the official
layout in the manual folder, prepared offline, trained on, validated on whole images.

The zips are stand-ins, so their sizes and SHA-256 are not the ones TFDS records for the official
files. The test registers the stand-ins' records on the builder class for its own duration (what
`tfds build --register_checksums` writes for a dataset's own files), leaving the installed
`checksums.tsv` untouched; every other step is TFDS's own.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path, PurePosixPath

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edsr_mlflow import cli, data
from edsr_mlflow.errors import DataError

from helpers import all_runs, cli_args

tfds = pytest.importorskip("tensorflow_datasets")
from tensorflow_datasets.core.download import checksums  # noqa: E402

TRAIN_IDS, VALID_IDS = (1, 2, 3), (801, 802, 803, 804, 805)
LR_SIDE = 24


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def brightness_of(number: int) -> int:
    """Each validation image's mean brightness says which file it came from."""
    return 40 * (number - 800)


def write_div2k_zips(manual_dir: Path, scale: int) -> None:
    """DIV2K's official layout: DIV2K_train_HR/0001.png, DIV2K_train_LR_bicubic/X2/0001x2.png..."""
    manual_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(scale)
    for split, numbers in (("train", TRAIN_IDS), ("valid", VALID_IDS)):
        hr_zip = zipfile.ZipFile(manual_dir / f"DIV2K_{split}_HR.zip", "w")
        lr_zip = zipfile.ZipFile(manual_dir / f"DIV2K_{split}_LR_bicubic_X{scale}.zip", "w")
        with hr_zip, lr_zip:
            for number in numbers:
                side = LR_SIDE * scale
                base = brightness_of(number) if split == "valid" else 128
                hr = np.clip(base + rng.normal(0, 8, (side, side, 3)), 0, 255).astype(np.uint8)
                lr = np.asarray(Image.fromarray(hr).resize((LR_SIDE, LR_SIDE), Image.BICUBIC))
                hr_zip.writestr(f"DIV2K_{split}_HR/{number:04d}.png", png_bytes(hr))
                lr_zip.writestr(f"DIV2K_{split}_LR_bicubic/X{scale}/{number:04d}x{scale}.png", png_bytes(lr))


def register_stand_in_checksums(monkeypatch, scale: int, manual_dir: Path) -> None:
    builder_class = tfds.builder_cls("div2k")
    records = dict(builder_class.url_infos or {})
    config = next(c for c in builder_class.BUILDER_CONFIGS if c.name == f"bicubic_x{scale}")
    for url in config.download_urls.values():
        content = (manual_dir / PurePosixPath(url).name).read_bytes()
        records[url] = checksums.UrlInfo(size=len(content), checksum=hashlib.sha256(content).hexdigest(),
                                         filename=PurePosixPath(url).name)
    monkeypatch.setattr(builder_class, "url_infos", records)


@pytest.fixture
def div2k_zips(tmp_path, monkeypatch):
    """Makes the stand-in zips for a scale under $TFDS_DATA_DIR/downloads/manual; returns that folder."""
    data_dir = tmp_path / "tensorflow_datasets"
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    manual_dir = data_dir / "downloads" / "manual"

    def make(scale: int) -> Path:
        write_div2k_zips(manual_dir, scale)
        register_stand_in_checksums(monkeypatch, scale, manual_dir)
        return manual_dir

    return make


@pytest.mark.parametrize("scale", [3, 4])
def test_div2k_is_prepared_offline_from_the_manual_folder(div2k_zips, scale):
    div2k_zips(scale)
    sr_data = data.load_sr_data("div2k", scale, patch_size=16)

    assert sr_data.train_info.source == "tfds:div2k/bicubic_x%d:2.0.0" % scale
    assert sr_data.train_info.num_images == len(TRAIN_IDS) and sr_data.val_info.num_images == len(VALID_IDS)
    for lr, hr in sr_data.train_images.as_numpy_iterator():
        assert lr.shape == (LR_SIDE, LR_SIDE, 3) and hr.shape == (LR_SIDE * scale, LR_SIDE * scale, 3)


def test_validation_images_carry_their_div2k_file_names(div2k_zips):
    div2k_zips(2)
    pairs = data.load_sr_data("div2k", 2, patch_size=16).val_pairs

    assert sorted(p.name for p in pairs) == [f"{n:04d}.png" for n in VALID_IDS]
    for pair in pairs:
        number = int(pair.name[:4])
        assert abs(pair.hr_image.mean() - brightness_of(number)) < 10, pair.name


@pytest.mark.slow
def test_training_on_div2k_logs_the_tfds_dataset_and_validates_on_whole_images(tracking_store, div2k_zips):
    div2k_zips(2)
    params = dict(dataset="div2k", scale=2, blocks=1, filters=8, patch_size=16, batch_size=4,
                  epochs=1, steps_per_epoch=2, seed=1)
    result = CliRunner().invoke(cli.main, ["train", *cli_args(params)], catch_exceptions=False)
    assert result.exit_code == 0, result.output

    (run,) = all_runs()
    assert run.info.status == "FINISHED"
    datasets = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert datasets["training"].name == "tfds:div2k/bicubic_x2:2.0.0:train"
    assert datasets["validation"].name == "tfds:div2k/bicubic_x2:2.0.0:validation"
    assert "tensorflow.org/datasets/catalog/div2k" in datasets["training"].source
    val_psnr = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_psnr")
    assert [m.step for m in val_psnr] == [1] and np.isfinite(val_psnr[0].value)
    print(f"DIV2K x2, 2 steps: validation PSNR {val_psnr[0].value:.2f} dB on {len(VALID_IDS)} whole images")


def test_a_truncated_zip_is_named_with_what_to_do(div2k_zips):
    manual_dir = div2k_zips(2)
    zip_path = manual_dir / "DIV2K_valid_HR.zip"
    zip_path.write_bytes(zip_path.read_bytes()[:-100])

    with pytest.raises(DataError, match=r"DIV2K_valid_HR.zip has .* bytes, the official DIV2K_valid_HR.zip .*: "
                                        r"it is partial or another file; download it again from https://"):
        data.div2k_builder(2, data_dir=str(manual_dir.parents[1]))


def test_a_zip_with_other_content_is_named_with_what_to_do(div2k_zips):
    manual_dir = div2k_zips(2)
    zip_path = manual_dir / "DIV2K_train_LR_bicubic_X2.zip"
    content = bytearray(zip_path.read_bytes())
    content[len(content) // 2] ^= 0xFF  # same size, other bytes
    zip_path.write_bytes(bytes(content))

    with pytest.raises(DataError) as refused:
        data.div2k_builder(2, data_dir=str(manual_dir.parents[1]))
    message = str(refused.value)
    assert "\n" not in message
    assert f"{zip_path} is not the official DIV2K_train_LR_bicubic_X2.zip" in message
    assert "download it again from https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_LR_bicubic_X2.zip" in message
