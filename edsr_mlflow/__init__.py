"""EDSR super-resolution experiments tracked in MLflow.

Modules, one concern each:

- ``options``  -- the names a configuration may use (upsamplers, scales...) and their checks, without TensorFlow
- ``model``    -- the EDSR network and its upsampling stages (no logging, no I/O)
- ``images``   -- reading images, MATLAB-like bicubic resizing, the one uint8 post-processing path
- ``metrics``  -- PSNR and SSIM in the protocol of the super-resolution literature
- ``data``     -- image sources (DIV2K via TFDS, a directory, bundled samples) and tf.data pipelines
- ``config``   -- the validated training configuration
- ``training`` -- ``train(config, model, data) -> TrainResult``, Keras callbacks without MLflow
- ``inference``, ``evaluation``, ``visuals`` -- SR images (whole, tiled, self-ensemble), scores, sample strips
- ``sweep``    -- study grid files expanded into configurations
- ``findings``, ``plots`` -- the comparison table and its figures (pure pandas / matplotlib)
- ``statistics`` -- paired comparisons of configurations by seed (t-intervals, Holm, verdicts)
- ``spectral`` -- where an upscaler's error lies: periodic-error (checkerboard) index, band PSNR
- ``tracking`` -- writes to MLflow during runs; ``run_store`` -- reads runs back for ``compare``
- ``workflows``, ``comparison`` -- run-level glue between the pure pieces and MLflow
- ``cli``      -- the ``edsr-mlflow`` click commands, thin adapters over the above
"""

__version__ = "0.1.0"
