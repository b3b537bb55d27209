"""EDSR super-resolution experiments tracked in MLflow.

Modules, one concern each:

- ``config``   -- the validated training configuration and what each field may hold (no TensorFlow)
- ``schema``   -- the names a run records: tags, run names, epoch/final/``eval_<set>_...`` metric keys
- ``model``    -- the EDSR network and its upsampling stages (no logging, no I/O)
- ``edsr_layers`` -- its custom Keras layers; ``edsr_pyfunc`` -- the logged model's pyfunc and the one
  uint8 path (both shipped in every logged model's ``code/``, so they import nothing else from here)
- ``images``   -- image pairs, reading images, MATLAB-like bicubic resizing, where the benchmark sets lie
- ``metrics``  -- PSNR and SSIM in the protocol of the super-resolution literature
- ``sources``  -- which files a dataset names, the hold-out split, whether they can train (no TensorFlow)
- ``data``     -- tf.data pipelines from those files, and DIV2K via TFDS
- ``training`` -- ``train(config, model, data) -> TrainResult``, Keras callbacks without MLflow
- ``inference``, ``evaluation``, ``samples`` -- SR images (whole, tiled, self-ensemble), scores, sample strips and crop grids
- ``spectral`` -- where an upscaler's error lies: periodic-error (checkerboard) index, band PSNR
- ``tracking`` -- runs in MLflow: URI, server check, run context managers, writes (no TensorFlow)
- ``run_store`` -- queries: the runs ``compare`` reads, sweep children, safe filter values
- ``model_logging`` -- the Keras side: the per-epoch callback, logging and safely loading the model
- ``grid``     -- study grid files expanded into configurations (pure)
- ``sweep``    -- running a grid as child runs, each in its own process, resumable (no TensorFlow)
- ``findings``, ``plots`` -- the comparison table and its figures (pure pandas / matplotlib)
- ``stale_runs`` -- runs ``mlflow run`` left RUNNING before the project started: found, closed
- ``statistics`` -- paired comparisons of configurations by seed (t-intervals, Holm, verdicts)
- ``workflows`` -- train, evaluate, upscale and the crop grid's models: the glue between the pure pieces and MLflow
- ``comparison`` -- ``compare``: query, table, figures, the comparison run (no TensorFlow)
- ``crops``    -- ``crops``: which runs, images and textured windows the crop grid shows (no TensorFlow)
- ``distribute`` -- ``tf.distribute`` strategies by name, the multi-worker cluster
- ``cli``      -- the ``edsr-mlflow`` click commands, thin adapters over the above
"""

__version__ = "0.1.0"
