"""EDSR's custom Keras pieces: the layers and the initializer that ``model`` builds with.

Small, serialisable and registered under the package name ``edsr_mlflow``, so a saved
``.keras`` file loads back in Keras' safe mode once this module is imported. It imports only
Keras (TensorFlow lazily, on that backend), because a logged model ships it in its ``code/``
folder: there it is the top-level module ``edsr_layers``, imported by ``edsr_pyfunc`` before the
model is loaded, so serving the model needs neither this package nor its dependencies.
"""

from __future__ import annotations

import keras

# Mean RGB of the DIV2K training set, in 0..255 (EDSR's MeanShift).
DIV2K_RGB_MEAN = (0.4488 * 255, 0.4371 * 255, 0.4040 * 255)


@keras.saving.register_keras_serializable(package="edsr_mlflow")
class NormalizeRGB(keras.layers.Layer):
    """(x - mean) / 127.5 on the way in (``inverse=False``), x * 127.5 + mean on the way out."""

    def __init__(self, mean=DIV2K_RGB_MEAN, inverse: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)
        self.inverse = bool(inverse)

    def call(self, x):
        mean = keras.ops.cast(keras.ops.convert_to_tensor(self.mean), x.dtype)
        if self.inverse:
            return x * 127.5 + mean
        return (x - mean) / 127.5

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "inverse": self.inverse}


class _Enlarging(keras.layers.Layer):
    """A layer that enlarges height and width by a whole ``factor``."""

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def output_channels(self, channels: int) -> int:
        return channels

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        r = self.factor
        return (n, None if h is None else h * r, None if w is None else w * r, self.output_channels(c))

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="edsr_mlflow")
class PixelShuffle(_Enlarging):
    """Sub-pixel rearrangement (depth-to-space): (H, W, C*r*r) -> (H*r, W*r, C)."""

    def output_channels(self, channels: int) -> int:
        return channels // (self.factor * self.factor)

    def call(self, x):
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            return tf.nn.depth_to_space(x, self.factor)
        # The same rearrangement for other Keras backends (JAX on a GPU machine without TensorFlow):
        # channel (i * r + j) * C + c of pixel (h, w) goes to pixel (h * r + i, w * r + j), channel c.
        r = self.factor
        n, h, w, c = keras.ops.shape(x)
        x = keras.ops.reshape(x, (n, h, w, r, r, c // (r * r)))
        x = keras.ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return keras.ops.reshape(x, (n, h * r, w * r, c // (r * r)))


@keras.saving.register_keras_serializable(package="edsr_mlflow")
class BilinearUpsampling(_Enlarging):
    """``UpSampling2D(interpolation="bilinear")`` for inputs of any size.

    Keras' layer computes the new size with Python checks that fail when height and width
    are unknown while tracing, which whole-image inference at any size needs.
    """

    def call(self, x):
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            size = tf.shape(x)[1:3] * self.factor
            return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)
        _, h, w, _ = keras.ops.shape(x)  # static on JAX, the other backend this runs on
        return keras.ops.image.resize(x, (h * self.factor, w * self.factor), interpolation="bilinear")


@keras.saving.register_keras_serializable(package="edsr_mlflow")
class Scale(keras.layers.Layer):
    """Multiplies by a constant: EDSR's residual scaling, which stabilises wide models."""

    def __init__(self, factor: float, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, x):
        return x * keras.ops.cast(self.factor, x.dtype)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="edsr_mlflow")
class ICNR(keras.initializers.Initializer):
    """ICNR (Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution"): the
    sub-pixel conv's kernel initialised so that the ``factor**2`` outputs that the pixel shuffle
    spreads over one ``factor x factor`` block start equal, i.e. as nearest-neighbour resize
    then convolution, free of checkerboard at initialisation."""

    def __init__(self, factor: int, initializer="glorot_uniform"):
        self.factor = int(factor)
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape, dtype=None):
        *spatial, channels_in, channels_out = shape
        sub_shape = (*spatial, channels_in, channels_out // self.factor**2)
        sub_kernel = self.initializer(sub_shape, dtype=dtype)
        # depth_to_space reads channel (i * r + j) * C + c: repeat the whole C-block r*r times.
        return keras.ops.tile(sub_kernel, (1,) * len(spatial) + (1, self.factor**2))

    def get_config(self):
        return {"factor": self.factor, "initializer": keras.initializers.serialize(self.initializer)}
