"""Training without MLflow: schedule, time budget, checkpoints, NaN detection, config validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edsr_mlflow import data, training
from edsr_mlflow.config import TrainConfig
from edsr_mlflow.errors import ConfigError, TrainingDiverged


@pytest.fixture(scope="module")
def sample_data():
    return data.load_sr_data("sample", 2, 16)


def test_learning_rate_halves_at_fixed_fractions():
    rates = [training.learning_rate_at(p, 1e-3) for p in (0.0, 0.49, 0.5, 0.75, 0.9, 1.0)]
    assert rates == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4, 1.25e-4])


@pytest.mark.parametrize(
    "override, message",
    [
        ({"upsampler": "pixelshuffle"}, "subpixel, transpose, nearest, bilinear"),
        ({"scale": 5}, "2, 3, 4"),
        ({"blocks": 0}, "blocks"),
        ({"patch_size": -4}, "patch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"precision": "float16"}, "mixed_bfloat16"),
        ({"time_budget_s": -1.0}, "time_budget_s"),
        ({"dataset": ""}, "sample"),
    ],
)
def test_config_rejects_bad_values_naming_the_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**override)


def test_config_round_trips_through_mlflow_string_params(tiny_params):
    config = TrainConfig(**{**tiny_params, "precision": "mixed_bfloat16"}, time_budget_s=12.5)
    as_strings = {k: str(v) for k, v in config.as_params().items()}
    assert TrainConfig.from_params(as_strings) == config
    assert config.run_name == "edsr_x2_b1_f8_subpixel"


def test_train_records_every_epoch_and_checkpoints(tmp_path, tiny_params, sample_data):
    config = TrainConfig(**tiny_params)
    result = training.train(config, training.build_model(config), sample_data, tmp_path, verbose=0)
    history = result.state.history
    assert len(history) == config.epochs == result.state.epoch
    for epoch in history:
        assert {"train_loss", "val_psnr", "val_ssim", "step_time_ms", "patches_per_s", "learning_rate"} <= set(epoch)
        assert epoch["steps"] == config.steps_per_epoch
        assert math.isfinite(epoch["val_psnr"]) and 0 < epoch["val_ssim"] <= 1
    assert result.stop_reason == "epochs"
    assert math.isfinite(result.bicubic_val_psnr)

    model, state = training.load_checkpoint(tmp_path)
    assert state.epoch == config.epochs and state.history == history
    assert int(model.optimizer.iterations) == config.total_steps
    lr_batch = np.random.default_rng(0).uniform(0, 255, (1, 12, 12, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(lr_batch, verbose=0), result.model.predict(lr_batch, verbose=0))


def test_resumed_training_continues_at_the_next_epoch(tmp_path, tiny_params, sample_data):
    first = TrainConfig(**{**tiny_params, "epochs": 1})
    training.train(first, training.build_model(first), sample_data, tmp_path, verbose=0)
    model, state = training.load_checkpoint(tmp_path)
    longer = TrainConfig(**{**tiny_params, "epochs": 3})
    result = training.train(longer, model, sample_data, tmp_path, state=state, verbose=0)
    assert len(result.state.history) == 3
    assert int(result.model.optimizer.iterations) == longer.total_steps


def test_time_budget_stops_training_early(tmp_path, tiny_params, sample_data):
    config = TrainConfig(**{**tiny_params, "epochs": 3, "steps_per_epoch": 10_000, "time_budget_s": 1.0})
    result = training.train(config, training.build_model(config), sample_data, tmp_path, verbose=0)
    assert result.stop_reason == "time_budget"
    assert result.state.epoch == 1  # the epoch in progress is validated and recorded
    assert result.state.history[0]["steps"] < 10_000
    assert result.state.train_time_s >= 1.0


def test_nan_loss_raises_a_clear_error(tmp_path, tiny_params, sample_data):
    config = TrainConfig(**tiny_params)
    model = training.build_model(config)
    model.get_layer("head_conv").set_weights([np.full(w.shape, np.nan, np.float32) for w in model.get_layer("head_conv").get_weights()])
    with pytest.raises(TrainingDiverged, match="lower learning_rate"):
        training.train(config, model, sample_data, tmp_path, verbose=0)


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(training.UserError, match="no checkpoint"):
        training.load_checkpoint(tmp_path)


def test_the_tracing_first_step_is_left_out_of_the_step_time(monkeypatch, tmp_path):
    # Epoch 1: the first step traces the graph (10 s), then two steps of 1 s: 1,000 ms per step,
    # not 4,000. Epoch 2 has no tracing step: every step counts.
    clock = iter([0.0, 10.0, 11.0, 12.0, 100.0, 101.0, 102.0])
    monkeypatch.setattr(training.time, "perf_counter", lambda: next(clock))
    epoch = training._EpochTraining(TrainConfig(dataset="sample", steps_per_epoch=3), training.TrainState(), [], tmp_path)
    from types import SimpleNamespace

    epoch.set_model(SimpleNamespace(optimizer=SimpleNamespace(learning_rate=SimpleNamespace(assign=lambda value: None))))
    epoch.on_epoch_begin(0)
    for batch in range(3):
        epoch.on_train_batch_end(batch)
    assert epoch._step_time_ms(12.0) == pytest.approx(1000.0)
    epoch.on_epoch_begin(1)
    for batch in range(2):
        epoch.on_train_batch_end(batch)
    assert epoch._step_time_ms(2.0) == pytest.approx(1000.0)
