"""The EDSR builder: shapes, serialisation, hyperparameters, parameter counts, errors, MACs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from edsr_mlflow import config, edsr_layers, model, schema
from edsr_mlflow.errors import ConfigError

SCALES = (2, 3, 4)
TINY = dict(blocks=1, filters=8)


def tiny_model(scale: int = 2, upsampler: str = "subpixel", **overrides) -> keras.Model:
    return model.build_edsr(scale=scale, upsampler=upsampler, **{**TINY, **overrides})


@pytest.fixture
def lr_batch() -> np.ndarray:
    """Two odd-sized, non-square RGB images in 0..255."""
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(2, 7, 5, 3)).astype(np.float32)


def forward(net: keras.Model, lr_batch: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(net(lr_batch, training=False))


# ---------------------------------------------------------------- shapes and serialisation


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("upsampler", list(model.UPSAMPLERS))
@pytest.mark.parametrize("height, width", [(7, 5), (6, 9), (1, 3)])
def test_output_shape_is_scale_times_input(upsampler, scale, height, width):
    net = tiny_model(scale, upsampler)
    lr_images = np.full((2, height, width, 3), 100.0, np.float32)
    sr_images = forward(net, lr_images)
    assert sr_images.shape == (2, height * scale, width * scale, 3)
    assert sr_images.dtype == np.float32
    assert np.all(np.isfinite(sr_images))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("upsampler", list(model.UPSAMPLERS))
def test_keras_file_round_trip_in_safe_mode(upsampler, scale, lr_batch, tmp_path):
    net = tiny_model(scale, upsampler)
    path = tmp_path / f"{net.name}.keras"
    net.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)

    np.testing.assert_array_equal(forward(loaded, lr_batch), forward(net, lr_batch))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in net.layers]
    for layer in (*net.layers, *loaded.layers):
        assert not isinstance(layer, keras.layers.Lambda), layer.name


def test_input_normalisation_is_not_a_lambda_and_inverts():
    normalize = edsr_layers.NormalizeRGB()
    denormalize = edsr_layers.NormalizeRGB(inverse=True)
    rgb = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    normalized = keras.ops.convert_to_numpy(normalize(rgb))
    expected = (rgb - np.array(edsr_layers.DIV2K_RGB_MEAN, np.float32)) / 127.5
    np.testing.assert_allclose(normalized, expected, rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(denormalize(normalized)), rgb, atol=1e-4)


# ---------------------------------------------------------------- every argument changes the model


def test_blocks_change_the_model(lr_batch):
    keras.utils.set_random_seed(0)
    one = tiny_model(blocks=1)
    keras.utils.set_random_seed(0)
    two = tiny_model(blocks=2)
    assert two.count_params() - one.count_params() == 2 * (9 * 8 * 8 + 8)
    assert "res_block_2_conv1" in {layer.name for layer in two.layers}
    assert "res_block_2_conv1" not in {layer.name for layer in one.layers}
    assert not np.allclose(forward(one, lr_batch), forward(two, lr_batch))


def test_filters_change_the_model(lr_batch):
    keras.utils.set_random_seed(0)
    narrow = tiny_model(filters=8)
    keras.utils.set_random_seed(0)
    wide = tiny_model(filters=12)
    assert narrow.get_layer("head_conv").kernel.shape == (3, 3, 3, 8)
    assert wide.get_layer("head_conv").kernel.shape == (3, 3, 3, 12)
    # Every body conv follows the argument (keras-io's example hard-coded 64 in the blocks).
    assert wide.get_layer("res_block_1_conv2").kernel.shape == (3, 3, 12, 12)
    assert wide.count_params() > narrow.count_params()
    assert not np.allclose(forward(narrow, lr_batch), forward(wide, lr_batch))


def test_residual_branches_start_at_zero_so_blocks_start_as_identities():
    built = tiny_model()
    kernel, bias = built.get_layer("res_block_1_conv2").get_weights()
    assert not kernel.any() and not bias.any()
    assert built.get_layer("res_block_1_conv1").get_weights()[0].any()


def test_res_scale_changes_outputs_with_identical_weights(lr_batch):
    plain = tiny_model(res_scale=1.0)
    scaled = tiny_model(res_scale=0.1)
    # Trained weights: the residual branch's last conv is no longer zero.
    rng = np.random.default_rng(3)
    conv2 = plain.get_layer("res_block_1_conv2")
    conv2.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) for w in conv2.get_weights()])
    scaled.set_weights(plain.get_weights())
    for a, b in zip(plain.get_weights(), scaled.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert scaled.get_layer("res_block_1_scale").factor == pytest.approx(0.1)
    assert not np.allclose(forward(plain, lr_batch), forward(scaled, lr_batch), atol=1e-3)


def test_res_scale_one_and_identical_weights_give_identical_outputs(lr_batch):
    """The control for the test above: same weights, same res_scale -> same outputs."""
    first = tiny_model(res_scale=0.5)
    second = tiny_model(res_scale=0.5)
    second.set_weights(first.get_weights())
    np.testing.assert_array_equal(forward(first, lr_batch), forward(second, lr_batch))


def test_upsampler_changes_the_model():
    layer_types = {
        name: {type(layer).__name__ for layer in tiny_model(upsampler=name).layers}
        for name in model.UPSAMPLERS
    }
    assert "PixelShuffle" in layer_types["subpixel"]
    assert "Conv2DTranspose" in layer_types["transpose"]
    assert "UpSampling2D" in layer_types["nearest"] and "BilinearUpsampling" in layer_types["bilinear"]
    nearest = tiny_model(upsampler="nearest").get_layer("upsample_1_nearest")
    assert nearest.interpolation == "nearest"
    names = {name: tiny_model(upsampler=name).name for name in model.UPSAMPLERS}
    assert len(set(names.values())) == len(model.UPSAMPLERS)


@pytest.mark.parametrize("scale", SCALES)
def test_scale_changes_the_model(scale, lr_batch):
    net = tiny_model(scale)
    assert net.name == f"edsr_x{scale}_b1_f8_subpixel"
    assert forward(net, lr_batch).shape[1:3] == (7 * scale, 5 * scale)


def test_every_upsampler_name_has_a_stage():
    assert list(model.UPSAMPLERS) == list(config.UPSAMPLER_NAMES)


def test_run_name_encodes_hyperparameters():
    assert schema.run_name(4, 8, 64, "transpose") == "edsr_x4_b8_f64_transpose"
    assert model.build_edsr(3, blocks=2, filters=4, upsampler="bilinear").name == "edsr_x3_b2_f4_bilinear"


# ---------------------------------------------------------------- the paper's baseline


@pytest.mark.parametrize("scale, params", [(2, 1_369_859), (3, 1_554_499), (4, 1_517_571)])
def test_baseline_parameter_count(scale, params):
    net = model.build_edsr(scale=scale, blocks=16, filters=64, upsampler="subpixel")
    assert net.count_params() == params


@pytest.mark.parametrize(
    "scale, stages, factor", [(2, ["upsample_1"], 2), (3, ["upsample_1"], 3), (4, ["upsample_1", "upsample_2"], 2)]
)
def test_upsampling_stages(scale, stages, factor):
    assert model.upsampling_factors(scale) == tuple([factor] * len(stages))
    net = tiny_model(scale)
    shuffles = [layer for layer in net.layers if isinstance(layer, edsr_layers.PixelShuffle)]
    assert [layer.name for layer in shuffles] == [f"{stage}_shuffle" for stage in stages]
    assert all(layer.factor == factor for layer in shuffles)
    stage_names = {layer.name.rsplit("_", 1)[0] for layer in net.layers if layer.name.startswith("upsample_")}
    assert stage_names == set(stages)
    for stage in stages:
        assert net.get_layer(f"{stage}_conv").filters == 8 * factor * factor


@pytest.mark.parametrize("upsampler", list(model.UPSAMPLERS))
def test_x4_has_two_stages_for_every_upsampler(upsampler):
    names = {layer.name for layer in tiny_model(4, upsampler).layers}
    assert any(name.startswith("upsample_2") for name in names)
    names_x3 = {layer.name for layer in tiny_model(3, upsampler).layers}
    assert not any(name.startswith("upsample_2") for name in names_x3)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, must_mention",
    [
        (dict(upsampler="pixelshuffle"), ["pixelshuffle", "subpixel", "transpose", "nearest", "bilinear"]),
        (dict(scale=5), ["5", "2, 3, 4"]),
        (dict(scale=1), ["1", "2, 3, 4"]),
        (dict(blocks=0), ["blocks", "0"]),
        (dict(blocks=1.5), ["blocks", "1.5"]),
        (dict(filters=-1), ["filters", "-1"]),
        (dict(res_scale=0), ["res_scale", "0"]),
        (dict(res_scale=-0.1), ["res_scale", "-0.1"]),
        (dict(precision="float64"), ["float64", "float32", "mixed_bfloat16", "mixed_float16"]),
    ],
)
def test_invalid_arguments_raise_config_error(kwargs, must_mention):
    with pytest.raises(ConfigError) as error:
        model.build_edsr(**{**TINY, **kwargs})
    message = str(error.value)
    assert "\n" not in message
    for text in must_mention:
        assert text in message


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        config.check_scale(8)


# ---------------------------------------------------------------- cost, names, precision


@pytest.mark.parametrize("blocks, filters", [(1, 8), (2, 8), (1, 5)])
def test_macs_per_lr_pixel_matches_hand_count(blocks, filters):
    f = filters
    per_lr_pixel = (
        3 * f  # head conv 3 -> f
        + blocks * 2 * f * f  # two convs f -> f per residual block
        + f * f  # body conv
        + f * 4 * f  # upsampling conv f -> 4f (x2 sub-pixel)
        + 4 * f * 3  # tail conv f -> 3 on 4 HR pixels per LR pixel
    ) * 9  # all kernels 3x3
    net = model.build_edsr(scale=2, blocks=blocks, filters=filters, upsampler="subpixel")
    assert model.macs_per_lr_pixel(net) == per_lr_pixel
    assert model.macs_per_lr_pixel(net, probe_size=6) == per_lr_pixel


def test_macs_grow_with_scale_for_resize_upsamplers():
    # nearest/bilinear convs run at HR resolution: the x4 model's second stage costs 4x the first.
    f = 8
    x2 = model.macs_per_lr_pixel(tiny_model(2, "nearest"))
    x4 = model.macs_per_lr_pixel(tiny_model(4, "nearest"))
    assert x4 - x2 == 9 * f * f * 16 + 9 * f * 3 * (16 - 4)


def test_layer_names_are_deterministic():
    first = [layer.name for layer in tiny_model(blocks=2).layers]
    second = [layer.name for layer in tiny_model(blocks=2).layers]
    assert first == second
    assert first == [
        "lr_image",
        "normalize",
        "head_conv",
        "res_block_1_conv1",
        "res_block_1_relu",
        "res_block_1_conv2",
        "res_block_1_add",
        "res_block_2_conv1",
        "res_block_2_relu",
        "res_block_2_conv2",
        "res_block_2_add",
        "body_conv",
        "global_skip",
        "upsample_1_conv",
        "upsample_1_shuffle",
        "tail_conv",
        "denormalize",
    ]


def test_mixed_bfloat16_keeps_tail_and_output_in_float32(lr_batch):
    net = tiny_model(2, precision="mixed_bfloat16")
    assert net.get_layer("head_conv").compute_dtype == "bfloat16"
    assert net.get_layer("res_block_1_conv1").compute_dtype == "bfloat16"
    assert net.get_layer("head_conv").variable_dtype == "float32"
    assert net.get_layer("tail_conv").compute_dtype == "float32"
    assert net.get_layer("denormalize").compute_dtype == "float32"
    assert net.output.dtype == "float32"
    sr_images = net(lr_batch, training=False)
    assert keras.backend.standardize_dtype(sr_images.dtype) == "float32"
    assert sr_images.shape == (2, 14, 10, 3)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(sr_images)))


def test_bilinear_upsampling_equals_keras_upsampling2d():
    x = np.random.default_rng(5).uniform(0, 1, (2, 7, 9, 4)).astype(np.float32)
    ours = edsr_layers.BilinearUpsampling(2)(x)
    keras_layer = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(keras_layer), atol=1e-6)


# ---------------------------------------------------------------- controls: transpose kernel, ICNR


def test_transpose_kernel_6_has_the_weights_of_a_subpixel_conv():
    # Per x2 stage at f filters: sub-pixel 3*3*f*4f weights; transpose k6 6*6*f*f: the same.
    f = 8
    subpixel = tiny_model(2, "subpixel").get_layer("upsample_1_conv").kernel.shape
    transpose_k6 = tiny_model(2, "transpose", transpose_kernel=6).get_layer("upsample_1_transpose").kernel.shape
    transpose_k3 = tiny_model(2, "transpose").get_layer("upsample_1_transpose").kernel.shape
    assert np.prod(subpixel) == np.prod(transpose_k6) == 36 * f * f
    assert np.prod(transpose_k3) == 9 * f * f


@pytest.mark.parametrize("scale", SCALES)
def test_transpose_kernel_6_keeps_shapes_and_round_trips(scale, lr_batch, tmp_path):
    net = tiny_model(scale, "transpose", transpose_kernel=6)
    assert net.name == f"edsr_x{scale}_b1_f8_transpose_k6"
    path = tmp_path / "k6.keras"
    net.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(forward(loaded, lr_batch), forward(net, lr_batch))
    assert forward(net, lr_batch).shape[1:3] == (7 * scale, 5 * scale)


@pytest.mark.parametrize("factor", [2, 3])
def test_icnr_subpixel_stage_starts_as_nearest_neighbour(factor):
    # At initialisation each factor x factor block of the shuffled output holds one value per
    # channel (the checkerboard-free start of Aitken et al.); without ICNR it does not.
    rng = np.random.default_rng(1)
    features = rng.normal(size=(1, 5, 6, 4)).astype(np.float32)

    def stage_output(icnr: bool) -> np.ndarray:
        keras.utils.set_random_seed(3)
        inputs = keras.Input((None, None, 4))
        outputs = model.UPSAMPLERS["subpixel"](inputs, 4, factor, "up", "float32", icnr=icnr)
        return keras.ops.convert_to_numpy(keras.Model(inputs, outputs)(features))

    def block_spread(out: np.ndarray) -> float:
        blocks = out.reshape(1, 5, factor, 6, factor, 4)
        return float(np.abs(blocks - blocks[:, :, :1, :, :1]).max())

    assert block_spread(stage_output(icnr=True)) < 1e-6
    assert block_spread(stage_output(icnr=False)) > 1e-2


def test_icnr_round_trips_in_safe_mode(lr_batch, tmp_path):
    net = tiny_model(4, "subpixel", icnr=True)
    assert net.name == "edsr_x4_b1_f8_subpixel_icnr"
    path = tmp_path / "icnr.keras"
    net.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(forward(loaded, lr_batch), forward(net, lr_batch))


@pytest.mark.parametrize(
    "kwargs, must_mention",
    [
        (dict(upsampler="subpixel", transpose_kernel=6), ["transpose_kernel", "transpose", "subpixel"]),
        (dict(upsampler="nearest", icnr=True), ["icnr", "subpixel", "nearest"]),
        (dict(upsampler="transpose", transpose_kernel=0), ["transpose_kernel", "0"]),
    ],
)
def test_controls_apply_to_their_upsampler_only(kwargs, must_mention):
    with pytest.raises(ConfigError) as error:
        model.build_edsr(**{**TINY, **kwargs})
    for text in must_mention:
        assert text in str(error.value)


@pytest.mark.parametrize("layer", [edsr_layers.PixelShuffle(2), edsr_layers.BilinearUpsampling(2)])
def test_layers_without_tensorflow_ops_equal_the_tensorflow_path(layer, monkeypatch):
    # The keras.ops path that other Keras backends take (JAX on a GPU machine without TensorFlow).
    x = np.random.default_rng(2).normal(size=(2, 3, 5, 12)).astype(np.float32)
    with_tensorflow = keras.ops.convert_to_numpy(layer(x))
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    without = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(without, with_tensorflow, atol=1e-5)
