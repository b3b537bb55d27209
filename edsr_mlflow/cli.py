"""The ``edsr-mlflow`` command line: thin click adapters over ``workflows``.

Every MLproject entry point calls the command of the same name with the same parameters
(tests/test_interface.py keeps them in agreement). User errors print one line and exit
non-zero; Ctrl-C exits 130 with the run marked KILLED.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import time
from pathlib import Path

import click

from .config import PRECISIONS, STRATEGIES, SUPPORTED_SCALES, UPSAMPLER_NAMES, TrainConfig
from .errors import NothingToCompare, TrackingError, UserError
from .metrics import PROTOCOLS, Y_PROTOCOL
from .scratch import scratch_folder


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow (seconds) and finds its devices with stderr muted. Commands call it
    once their options are checked, so `--help` and a bad option answer at once. Muted because,
    on a machine without CUDA, TensorFlow prints lines that no log level silences (they come
    before its logging starts) and "failed call to cuInit" when it first looks for a GPU, and an
    error must stay one line. What of that helps is said in one line: a warning where an NVIDIA
    driver is present but TensorFlow found no GPU. An import failure still raises, with its
    traceback, once stderr is back."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with _hidden():
            import tensorflow

        gpus = tensorflow.config.list_physical_devices("GPU")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    if not gpus and Path("/proc/driver/nvidia/version").exists():
        click.echo("warning: this machine has an NVIDIA driver but TensorFlow found no GPU, so it runs on the CPU: "
                   "check nvidia-smi, and install TensorFlow's CUDA libraries (pip install 'tensorflow[and-cuda]')", err=True)


# Installed (MLflow brings both) and imported by Keras at its own import, for what this project
# never uses: scikit-learn (with SciPy's statistics) for Keras' scikit-learn wrappers, matplotlib's
# pyplot for keras.visualization. Seconds of every command's start-up (benchmarks/startup.py).
UNUSED_BY_KERAS = ("sklearn", "matplotlib")


@contextlib.contextmanager
def _hidden(packages: tuple[str, ...] = UNUSED_BY_KERAS):
    """While inside, importing any of ``packages`` (or a submodule) fails as if it were not
    installed, so Keras' optional imports of them fall back; importable again afterwards. A
    package already loaded is left alone (nothing to save)."""
    hidden = [name for name in packages if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # the import system's own "not importable" marker
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


DEFAULTS = TrainConfig()


def _check_model_exists(model_uri: str) -> None:
    """A model URI that names nothing fails here, in a second, not after TensorFlow's import."""
    from .tracking import check_tracking_server, model_run_id

    check_tracking_server()
    model_run_id(model_uri)


class WholeNumber(click.ParamType):
    """An integer that also accepts "8.0": MLproject parameters have no int type, only float."""

    name = "integer"

    def __init__(self, minimum: int | None = None):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a whole number", param, ctx)
            if not number.is_integer():
                self.fail(f"{value!r} is not a whole number", param, ctx)
        if self.minimum is not None and number < self.minimum:
            self.fail(f"{value!r} is below {self.minimum}", param, ctx)
        return int(number)


INT = WholeNumber()
COUNT = WholeNumber(minimum=0)  # 0 meaning "none"
# A tile carries 16 LR pixels of context on each side (inference.model_upscaler): below 32 a
# tile computes more than 4x its own area, and --tile 1 took 87 minutes for a 2000x1500 image.
MIN_TILE = 32


class TileSide(WholeNumber):
    """0 (the whole image at once) or a tile side of at least :data:`MIN_TILE` LR pixels."""

    def convert(self, value, param, ctx):
        side = super().convert(value, param, ctx)
        if 0 < side < MIN_TILE:
            self.fail(f"{side} is too small a tile: use 0 (whole image) or at least {MIN_TILE}", param, ctx)
        return side


TILE = TileSide(minimum=0)
TILE_HELP = f"LR tile side for bounded-memory inference (0 = whole image; else at least {MIN_TILE})."


def _bound_http_retries() -> None:
    """Caps how long MLflow's client retries a tracking server that went away: about 30 s
    (5 tries, backoff 1, 2, 4, 8, 16 s) rather than MLflow's several minutes; then the run
    stops with a one-line error and can be resumed. Values the user set are kept."""
    for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")):
        os.environ.setdefault(name, value)


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def friendly_errors(command):
    """One line and an exit code for problems the user can fix; tracebacks only for bugs."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        with scratch_folder():  # what MLflow, TFDS and autograph leave in the temp folder goes with it
            return _run_friendly(command, *args, **kwargs)

    return wrapper


def _run_friendly(command, *args, **kwargs):
    try:
        return command(*args, **kwargs)
    except UserError as error:
        click.echo(f"{error.label}: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:  # outside a training run (training says which run and what next)
        click.echo("interrupted: any run in progress is marked KILLED", err=True)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001  only MLflow's refusals become one line; bugs keep their traceback
        if getattr(error, "error_code", None) != "PERMISSION_DENIED":
            raise
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "this user")
        first_line = (str(error).strip().splitlines() or ["HTTP 403"])[0][:200]
        click.echo(f"error: the tracking server refused {user} ({first_line}); ask its admin for EDIT permission on "
                   "that experiment, or train into an experiment of your own (--experiment NAME)", err=True)
        sys.exit(3)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main():
    """Train, evaluate and compare EDSR super-resolution models, tracked in MLflow.

    Runs go to MLFLOW_TRACKING_URI (default sqlite:///mlflow.db); browse them with
    `mlflow ui --backend-store-uri sqlite:///mlflow.db`.
    """
    _bound_http_retries()
    # `kill`, a service manager or a Kubernetes pod's end stops any command as Ctrl-C does: its
    # run (a sweep: its children too) closed KILLED, none left RUNNING nor a child orphaned.
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    # Not for the user's screen: "Creating initial MLflow database tables..." on every new store,
    # four lines of system-metrics monitoring per run, a progress bar per model download.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@main.command()
@click.option("--upsampler", type=click.Choice(UPSAMPLER_NAMES), default=DEFAULTS.upsampler, help="Upsampling block.")
@click.option("--transpose-kernel", type=INT, default=DEFAULTS.transpose_kernel, help="Kernel side of the transpose upsampler: 3 as usually coded, 6 = a 3x3 sub-pixel conv's equal at x2.")
@click.option("--icnr", type=click.BOOL, default=DEFAULTS.icnr, help="ICNR initialisation of the subpixel upsampler (checkerboard-free at the start).")
@click.option("--blocks", type=INT, default=DEFAULTS.blocks, help="Residual blocks (>= 1).")
@click.option("--filters", type=INT, default=DEFAULTS.filters, help="Feature channels (>= 1).")
@click.option("--scale", type=INT, default=DEFAULTS.scale, help=f"Upscaling factor: {', '.join(map(str, SUPPORTED_SCALES))}.")
@click.option("--res-scale", type=float, default=DEFAULTS.res_scale, help="Residual scaling (> 0).")
@click.option("--dataset", default=DEFAULTS.dataset, help="'div2k', 'sample', or a directory of HR images.")
@click.option("--val-dataset", default=DEFAULTS.val_dataset, help="Validation source; empty: DIV2K validation split, or every 10th image of the directory.")
@click.option("--patch-size", type=INT, default=DEFAULTS.patch_size, help="LR patch side in pixels.")
@click.option("--batch-size", type=INT, default=DEFAULTS.batch_size, help="Patches per step.")
@click.option("--epochs", type=INT, default=DEFAULTS.epochs, help="Epochs (validation and checkpoint after each).")
@click.option("--steps-per-epoch", type=INT, default=DEFAULTS.steps_per_epoch, help="Training steps per epoch.")
@click.option("--learning-rate", type=float, default=DEFAULTS.learning_rate, help="Adam learning rate, halved at 50%, 75% and 90% of training.")
@click.option("--seed", type=INT, default=DEFAULTS.seed, help="Seed for weights, patches and augmentation.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=DEFAULTS.precision,
              help="Keras dtype policy of the body; auto: the fastest that keeps quality on this machine (bfloat16 on CPUs with AMX or AVX-512 BF16, else float32; on GPUs by tensor cores).")
@click.option("--time-budget-s", type=float, default=DEFAULTS.time_budget_s, help="Stop training after this many seconds (0 = no limit), then validate and log.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=DEFAULTS.strategy, help="Devices: one, all local GPUs (mirrored), several hosts (multiworker, TF_CONFIG).")
@click.option("--experiment", default=None, help="MLflow experiment name (default: the active one, or MLFLOW_EXPERIMENT_NAME).")
@click.option("--checkpoint-dir", type=click.Path(path_type=Path), default=Path("checkpoints"), help="Root of per-run checkpoint folders.")
@click.option("--resume", "resume_run_id", default=None, help="Continue this run id from its last checkpoint (its own params are used).")
@click.option("--parent-run-id", default=None, hidden=True, help="Nest the run under this run (used by sweep).")
@click.option("--then-evaluate", default="", hidden=True, help="Comma-separated datasets to evaluate the logged model on once it is trained, in this process (used by sweep).")
@click.option("--benchmark-root", default="", hidden=True, help="Folder holding Set5/, Set14/... for --then-evaluate.")
@friendly_errors
def train(experiment, checkpoint_dir, resume_run_id, parent_run_id, then_evaluate, benchmark_root, **params):
    """Train one EDSR model and log it to MLflow."""
    config = TrainConfig(**params)
    if not resume_run_id:
        _check_fits_in_memory(config)
    from .distribute import is_chief
    from .tracking import check_tracking_server

    if resume_run_id or is_chief(config.strategy):  # the processes that log: told in a second, not after TensorFlow's import
        check_tracking_server()
    if not resume_run_id:  # a missing folder or images too small for the patch: told before TensorFlow's import too
        from .sources import check_training_sources

        check_training_sources(config.dataset, config.val_dataset or None, config.scale, config.patch_size)
    _import_tensorflow_quietly()
    from .workflows import train_run

    outcome = train_run(config, checkpoint_root=checkpoint_dir, resume_run_id=resume_run_id, experiment=experiment, parent_run_id=parent_run_id)
    m = outcome.final_metrics
    if outcome.run_id is None:
        click.echo(f"worker done: {outcome.result.state.epoch} epochs in step with the chief, which logged the run")
        return
    click.echo(trained_line(outcome.run_id, outcome.config.run_name, outcome.result.final_val_psnr,
                            m["val_psnr_gain"], m["train_time_s"]))
    click.echo(f"precision {outcome.precision.policy}{' with XLA' if outcome.precision.xla else ''}: {outcome.precision.reason}")
    browse = _browse_hint(outcome.run_id)
    click.echo("next:")
    click.echo(f"  browse it:   {browse}")
    click.echo(f"  compare:     {_script('edsr-mlflow')} compare --output-dir outputs/comparison")
    click.echo(f"  upscale:     {_script('edsr-mlflow')} upscale runs:/{outcome.run_id}/model photo.png photo_x{outcome.config.scale}.png")
    if then_evaluate:  # a sweep's child: one process, one TensorFlow start-up, for training and its evaluation
        from .workflows import evaluate_model

        run_id, evaluations = evaluate_model(f"runs:/{outcome.run_id}/model", _dataset_names(then_evaluate),
                                             benchmark_root=benchmark_root or None)
        _echo_evaluations(evaluations, Y_PROTOCOL.name, self_ensemble=False, run_id=run_id)


def trained_line(run_id: str, run_name: str, val_psnr: float, gain_db: float, train_time_s: float) -> str:
    """What ``train`` says of the run it logged: validation PSNR and gain over bicubic (dB),
    training time (s); a model below bicubic is said to be under-trained, not left to read
    as a result."""
    line = f"run {run_id} ({run_name}): val PSNR {val_psnr:.2f} dB, {gain_db:+.2f} dB over bicubic"
    if gain_db < 0:
        line += " (below bicubic: under-trained, train longer)"
    return f"{line}, {train_time_s:.0f} s of training"


def _check_fits_in_memory(config: TrainConfig) -> None:
    """Refuses, before any run exists, a model that cannot fit in this machine's memory (a typo
    such as --blocks 1e12 once made a run, then used 10 GB for ten minutes)."""
    import psutil

    needed, available = config.training_memory_lower_bound(), psutil.virtual_memory().available
    if needed > available:
        raise UserError(f"{config.run_name} with batch {config.batch_size} of {config.patch_size}px patches needs at least "
                        f"{needed / 2**30:,.1f} GiB to train, and this machine has {available / 2**30:.1f} GiB free; "
                        "lower blocks, filters, batch_size or patch_size")


def _script(name: str) -> str:
    """How to call this environment's ``name`` from here, activated or not: the script beside
    the running Python (``.venv/bin/mlflow``), relative where that is shorter; where there is
    none (an environment ``mlflow run --env-manager uv`` built, without this package installed),
    that Python running the module (``python -m edsr_mlflow``, from the project folder)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        return f"{_shortest_path(Path(sys.executable))} -m {name.replace('-', '_')}"
    return _shortest_path(path)


def _shortest_path(path: Path) -> str:
    relative = os.path.relpath(path)
    return relative if len(relative) < len(str(path)) and not relative.startswith("../..") else str(path)


def _browse_hint(run_id: str) -> str:
    """How to see the run in MLflow's UI: its experiment's runs, in the UI's model-training view
    (MLflow 3.17 opens in its GenAI view otherwise, whatever the experiment's kind)."""
    from .run_store import existing_run
    from .tracking import tracking_uri, ui_runs_page

    uri, experiment_id = tracking_uri(), existing_run(run_id).info.experiment_id
    if uri.startswith(("http://", "https://")):
        return f"open {ui_runs_page(experiment_id, uri)}"
    return f"{_script('mlflow')} ui --backend-store-uri {uri}   # then open {ui_runs_page(experiment_id)}"


@main.command()
@click.option("--model", "model_uri", required=True, help="runs:/<run_id>/model, models:/<name>/<version>, or 'bicubic' for the baseline.")
@click.option("--dataset", default="set5,set14", help="Comma-separated: div2k (validation split), set5, set14, bsd68, b100, urban100, manga109, or folders of HR images.")
@click.option("--scale", type=INT, default=0, help="Upscaling factor; needed for bicubic, otherwise read from the model's run (0).")
@click.option("--benchmark-root", default="", help="Folder holding Set5/, Set14/... (empty: $EDSR_BENCHMARK_ROOT).")
@click.option("--self-ensemble", type=click.BOOL, default=False, help="Average the 8 flips/rotations (EDSR+).")
@click.option("--tile", type=TILE, default=0, help=TILE_HELP)
@click.option("--protocol", type=click.Choice(sorted(PROTOCOLS)), default=Y_PROTOCOL.name, show_default=True,
              help="y: Y channel, shave = scale (benchmarks' protocol); rgb_paper: RGB, shave = scale + 6 "
                   "(the EDSR paper's DIV2K validation), logged as eval_<dataset>_rgb_paper_*.")
@friendly_errors
def evaluate(model_uri, dataset, scale, benchmark_root, self_ensemble, tile, protocol):
    """Score a logged model (or bicubic) on benchmarks; log the results to its training run."""
    datasets = _dataset_names(dataset)
    if model_uri != "bicubic":
        _check_model_exists(model_uri)
    _import_tensorflow_quietly()
    from .workflows import evaluate_model

    run_id, evaluations = evaluate_model(
        model_uri, datasets, scale=scale or None, benchmark_root=benchmark_root or None,
        self_ensemble=self_ensemble, tile=tile, protocol=PROTOCOLS[protocol],
    )
    _echo_evaluations(evaluations, protocol, self_ensemble, run_id)


def _dataset_names(comma_separated: str) -> list[str]:
    names = [name.strip() for name in comma_separated.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("name at least one dataset", param_hint="--dataset")
    return names


def _echo_evaluations(evaluations, protocol: str, self_ensemble: bool, run_id: str) -> None:
    from .schema import metric_prefix

    click.echo(f"protocol {protocol}: {PROTOCOLS[protocol].description}")
    click.echo(f"{'dataset':<12} {'images':>6} {'PSNR (dB)':>10} {'SSIM':>7} {'bicubic':>8} {'gain':>7} {'ms/MP':>8}")
    for e in evaluations:
        s = e.scores
        click.echo(f"{e.dataset:<12} {len(s.per_image):>6} {s.psnr:>10.3f} {s.ssim:>7.4f} {s.bicubic_psnr:>8.3f} "
                   f"{s.gain:>+7.3f} {1000 * s.seconds_per_megapixel:>8.1f}")
    prefix = metric_prefix("<dataset>", self_ensemble, protocol)
    click.echo(f"logged {prefix}_psnr, _ssim, _gain, _bicubic_psnr, _ms_per_mp, _periodic_index, _psnr_low, _psnr_high and eval/*.csv to run {run_id}")


@main.command()
@click.argument("model_uri")
@click.argument("input_path", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tile", type=TILE, default=None, show_default=False,
              help=f"LR tile side (0 = whole image; else at least {MIN_TILE}). Default: the whole image up to 512x512, "
                   "else tiles of 256 (or smaller) that fit the memory available; an image that cannot fit is refused before decoding.")
@click.option("--self-ensemble", is_flag=True, help="Average the 8 flips/rotations (slower, a little sharper).")
@click.option("--overwrite-input", is_flag=True, help="Allow OUTPUT_PATH to be INPUT_PATH (or a link to it): the input is replaced.")
@friendly_errors
def upscale(model_uri, input_path, output_path, tile, self_ensemble, overwrite_input):
    """Super-resolve one image file: edsr-mlflow upscale MODEL_URI in.png out.png"""
    from .images import check_output_path

    check_output_path(output_path, input_path, overwrite_input)  # before the seconds of loading and inference
    _check_model_exists(model_uri)
    _import_tensorflow_quietly()
    from .workflows import upscale_file

    width, height = upscale_file(model_uri, input_path, output_path, tile=tile, self_ensemble=self_ensemble,
                                 progress=_tile_progress())
    click.echo(f"wrote {output_path} ({width}x{height})")


def _tile_progress(every_s: float = 5.0):
    """A progress callback for tiled inference: a line on stderr at most every ``every_s``
    seconds, and the last one if any was shown (a short run shows none)."""
    state = {"last": time.monotonic(), "shown": False}

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - state["last"] >= every_s or (done == total and state["shown"]):
            click.echo(f"tile {done:,} of {total:,} ({100 * done / total:.0f} %)", err=True)
            state.update(last=now, shown=True)

    return progress


@main.command()
@click.option("--experiment", default="", help="Experiment whose training runs to compare (empty: every experiment).")
@click.option("--parent-run-id", default="", help="Compare only the child runs of this run, e.g. a sweep's parent (empty: no such filter).")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default="outputs/comparison", help="Where the table, excluded runs and figures are written (files there are replaced).")
@click.option("--grid", "grid_file", default="", help="Grid file whose pre-declared comparisons (paired by seed) and steps_to_gain_db columns to report (empty: none).")
@click.option("--throughput", default="", help="CSV of benchmarks/grid_throughput.py: measured step and inference times per configuration, and a Pareto front against them (empty: none).")
@click.option("--per-image", type=click.BOOL, default=False, help="Also per-image PSNR tables of each benchmark set (a download per run and set).")
@click.option("--plan", is_flag=True, help="Only print the planning table of the --grid file's hypotheses (the seeds each needs, from the runs so far); write and log nothing.")
@friendly_errors
def compare(experiment, parent_run_id, output_dir, grid_file, throughput, per_image, plan):
    """Compare training runs: one row per configuration, mean and std over seeds; with --grid,
    also the grid's model, its primary family's verdicts and the seeds each question needs."""
    from .findings import DEFAULT_GAIN_THRESHOLDS_DB

    comparisons, metrics, gains, definition = (), ("val_psnr",), DEFAULT_GAIN_THRESHOLDS_DB, None
    if plan and not grid_file:
        raise UserError("--plan plans a grid file's hypotheses: pass --grid experiments/<study>.yaml too")
    if grid_file:
        from .grid import load_sweep

        definition = load_sweep(grid_file)
        comparisons, metrics, gains = definition.comparisons, definition.comparison_metrics, definition.steps_to_gain_db
    if plan:
        from .comparison import plan_study
        from .statistics_report import planning_section

        click.echo("\n".join(planning_section(plan_study(definition, experiment or None, parent_run_id or None), definition.margin_db)))
        return
    from .comparison import compare_run
    from .findings import excluded_report
    from .stale_runs import find_stale_runs, stale_note

    try:
        outcome = compare_run(experiment=experiment or None, parent_run_id=parent_run_id or None, output_dir=output_dir,
                              comparisons=comparisons, comparison_metrics=metrics, gain_thresholds_db=gains,
                              throughput=Path(throughput) if throughput else None, per_image=per_image, definition=definition)
    except NothingToCompare as error:
        if stale := find_stale_runs():  # e.g. the newcomer's one `mlflow run .`, failed for want of conda
            raise TrackingError(f"{error}; {stale_note(stale).removeprefix('note: ')}") from None
        raise
    click.echo(outcome.markdown)
    if outcome.statistics_markdown:
        click.echo(outcome.statistics_markdown)
    elif outcome.paired_markdown:
        click.echo(outcome.paired_markdown)
    if len(outcome.excluded):
        click.echo(f"excluded {len(outcome.excluded)} run(s), listed in {output_dir / 'excluded_runs.csv'}:")
        click.echo(excluded_report(outcome.excluded))
    if outcome.without_samples:
        click.echo(f"no samples/*.png logged, left out of the crop grid: {', '.join(outcome.without_samples)}")
    click.echo(f"wrote {len(outcome.files)} files to {output_dir}/; logged them to run {outcome.run_id} "
               f"('comparison' in experiment '{outcome.experiment_name}')")
    if stale := find_stale_runs():
        click.echo(stale_note(stale))


@main.command()
@click.option("--experiment", default="", help="Experiment whose training runs to show, one per configuration (empty: every experiment).")
@click.option("--parent-run-id", default="", help="Only the child runs of this run, e.g. a sweep's parent (empty: no such filter).")
@click.option("--image", "image_paths", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="An image to crop, its HR original (repeatable; default: Set14's barbara and zebra under --benchmark-root).")
@click.option("--benchmark-root", default="", help="Folder holding Set14/, for the default images (empty: $EDSR_BENCHMARK_ROOT).")
@click.option("--crop-size", type=click.IntRange(min=1), default=48, help="Side of each crop in LR pixels.")
@click.option("--scale", type=COUNT, default=0, help="Show the runs of this scale (0: the runs' only scale).")
@click.option("--output", "output_path", type=click.Path(dir_okay=False, path_type=Path), default="textured_crops.png",
              help="The grid image to write (PNG).")
@friendly_errors
def crops(experiment, parent_run_id, image_paths, benchmark_root, crop_size, scale, output_path):
    """Crop grid from the most textured window of each image: per configuration bicubic | SR,
    under LR | HR; one representative run (the seed nearest the mean) per configuration."""
    from .crops import default_image_paths, plan_textured_crops
    from .images import check_output_path, save_rgb

    check_output_path(output_path)
    plan = plan_textured_crops(experiment or None, parent_run_id or None,
                               list(image_paths) or default_image_paths(benchmark_root or None), crop_size, scale)
    _import_tensorflow_quietly()
    from .workflows import textured_crop_grid

    save_rgb(textured_crop_grid(plan), output_path)
    click.echo(f"wrote {output_path} ({len(plan.runs)} configurations x {len(plan.windows)} images)")


@main.command()
@click.option("--grid", "grid_file", default="experiments/cpu_study.yaml", help="Grid file (see experiments/*.yaml).")
@click.option("--max-parallel", type=INT, default=1, help="Configurations trained at once, each in its own process.")
@click.option("--benchmark-root", default="", help="Folder holding Set5/, Set14/... for the grid's evaluate list (empty: $EDSR_BENCHMARK_ROOT).")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default="outputs", help="Logs go to <dir>/sweeps/<name>/, the comparison to <dir>/comparison/<name>/.")
@friendly_errors
def sweep(grid_file, max_parallel, benchmark_root, output_dir):
    """Train a grid of configurations as child runs of one parent run, then compare them.

    Re-running the same grid skips configurations that already FINISHED and retries failed ones.
    """
    from .grid import load_sweep

    definition = load_sweep(grid_file)
    from .comparison import compare_run
    from .sweep import sweep_run

    click.echo(f"sweep {definition.name}: {len(definition.configs)} configurations, up to {max_parallel} at a time")

    def report(outcome):
        detail = f"run {outcome.run_id}" if outcome.run_id else ""
        if outcome.status == "failed":
            detail = f"{outcome.message} (log: {outcome.log_file})"
        click.echo(f"  {outcome.status:<8} {outcome.config.run_name} seed {outcome.config.seed}  {detail}")

    parent_id, outcomes = sweep_run(definition, max_parallel=max_parallel, benchmark_root=benchmark_root or None,
                                    output_dir=output_dir, on_progress=report)
    counts = {status: sum(o.status == status for o in outcomes) for status in ("finished", "skipped", "failed")}
    click.echo(f"sweep {definition.name} (parent run {parent_id}): {counts['finished']} trained, "
               f"{counts['skipped']} already finished, {counts['failed']} failed")
    if counts["finished"] + counts["skipped"]:
        # The sweep whole: the children of its earlier parents too (launches before it took one parent).
        comparison = compare_run(experiment=definition.experiment, sweep=definition.name,
                                 output_dir=output_dir / "comparison" / definition.name,
                                 comparisons=definition.comparisons, comparison_metrics=definition.comparison_metrics,
                                 gain_thresholds_db=definition.steps_to_gain_db, definition=definition)
        click.echo(comparison.markdown)
        click.echo(comparison.statistics_markdown or comparison.paired_markdown)
    if counts["failed"]:
        raise UserError(f"{counts['failed']} of {len(outcomes)} configurations failed (logs in {output_dir}/sweeps/{definition.name}/); run the same command again to retry them")


@main.group()
def runs():
    """Housekeeping of the tracking store's runs."""


@runs.command()
@click.option("--stale", is_flag=True, help="Close the runs `mlflow run` left RUNNING before this project started in them (e.g. no conda).")
@click.option("--older-than-minutes", type=click.FloatRange(min=0), default=60.0, help="Only runs started at least this long ago (a younger one may still be building its environment).")
@click.option("--dry-run", is_flag=True, help="List them; change nothing.")
@friendly_errors
def clean(stale, older_than_minutes, dry_run):
    """Close runs left RUNNING for ever: each is named, marked FAILED and tagged with why."""
    if not stale:
        raise UserError("say what to clean: --stale (runs `mlflow run` left RUNNING before this project started)")
    from .stale_runs import close_stale_run, find_stale_runs
    from .tracking import check_tracking_server

    uri = check_tracking_server()
    found = find_stale_runs(older_than_minutes)
    if not found:
        click.echo(f"no stale runs in {uri} (RUNNING, made by `mlflow run`, never started by this project, "
                   f"older than {older_than_minutes:g} min)")
        return
    for run in found:
        if not dry_run:
            close_stale_run(run)
        click.echo(f"{'would close' if dry_run else 'closed'} {run.describe()}{'' if dry_run else ': FAILED'}")
    click.echo(f"{'would close' if dry_run else 'closed'} {len(found)} stale run(s) in {uri}")
