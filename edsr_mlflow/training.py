"""Training EDSR: ``train(config, model, sr_data, ...) -> TrainResult``.

No MLflow here: whoever calls ``train`` passes Keras callbacks for logging. Each epoch ends,
in order, with: step timing, whole-image validation (Y-PSNR/SSIM, shave = scale), a NaN
check, a checkpoint (model + optimizer + epoch metrics, written atomically), then the
caller's callbacks. A resumed run therefore never repeats or skips an epoch.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras

from . import data as sr_data_module
from .config import TrainConfig, learning_rate_at
from .data import SRData
from .errors import TrainingDiverged, UserError
from .evaluation import score_upscaler
from .images import bicubic_upscaler
from .inference import model_upscaler
from .metrics import mean_scores
from .model import build_edsr
from .precision import PrecisionChoice, choose_precision, cpu_flags

# EDSR's loss (L1), one Keras function for both training paths: ``fit`` averages it over the
# batch; the distributed loop averages each patch's value over the global batch.
L1_LOSS = "mean_absolute_error"
CHECKPOINT_FILE = "model.keras"  # in each epoch's folder, beside STATE_FILE
STATE_FILE = "state.json"
EPOCH_FOLDER = re.compile(r"epoch-(\d{5})")
LOCK_FILE = ".lock"


@dataclass
class TrainState:
    """What a checkpoint records beside the weights: where training stands."""

    epoch: int = 0  # last completed epoch (1-based); 0 before the first
    train_time_s: float = 0.0  # training wall time so far, validation excluded
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch

    @property
    def best_val_psnr(self) -> float:
        return max((h["val_psnr"] for h in self.history), default=float("nan"))


@dataclass
class TrainResult:
    model: keras.Model
    state: TrainState
    bicubic_val_psnr: float
    bicubic_val_ssim: float
    stop_reason: str  # "epochs", "time_budget"

    @property
    def final_val_psnr(self) -> float:
        return self.state.history[-1]["val_psnr"] if self.state.history else float("nan")


def build_model(config: TrainConfig, strategy=None) -> keras.Model:
    """A freshly initialised, compiled EDSR for ``config`` (L1 loss, Adam as in the paper),
    its variables placed by ``strategy`` (a ``tf.distribute.Strategy``; None: the default)."""
    keras.utils.set_random_seed(config.seed)  # every replica and worker starts from the same weights
    with _scope(strategy):
        model = build_edsr(
            scale=config.scale,
            blocks=config.blocks,
            filters=config.filters,
            res_scale=config.res_scale,
            upsampler=config.upsampler,
            precision=precision_choice(config).policy,
            transpose_kernel=config.transpose_kernel,
            icnr=config.icnr,
        )
        compile_model(model, config)
    return model


def _scope(strategy):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def precision_choice(config: TrainConfig) -> PrecisionChoice:
    """The dtype policy and XLA setting ``config.precision`` means on this machine."""
    return _precision_on_this_machine(config.precision)


@functools.cache  # the machine does not change within a process: look at it once
def _precision_on_this_machine(requested: str) -> PrecisionChoice:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") if gpus else None
    return choose_precision(requested, gpu_capability=capability, flags=cpu_flags())


def compile_model(model: keras.Model, config: TrainConfig) -> None:
    choice = precision_choice(config)
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    if choice.policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    # L1, not L2: the paper found it trains EDSR to higher PSNR.
    model.compile(optimizer=optimizer, loss=L1_LOSS, jit_compile=choice.xla)


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(model: keras.Model, state: TrainState, directory: Path) -> None:
    """Writes model (with optimizer state) and training state as one unit: both go into a hidden
    folder that one rename turns into ``epoch-NNNNN/``, so a kill at any point leaves either the
    new pair or the old one, never a model of one epoch beside the state of another. Older epoch
    folders are removed after."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"epoch-{state.epoch:05d}"
    tmp = directory / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save(tmp / CHECKPOINT_FILE)
    (tmp / STATE_FILE).write_text(json.dumps({"epoch": state.epoch, "train_time_s": state.train_time_s, "history": state.history}, indent=1))
    shutil.rmtree(final, ignore_errors=True)  # only after a crash between this rename and the clean-up below
    os.replace(tmp, final)
    for older in _epoch_folders(directory)[:-1]:
        shutil.rmtree(older, ignore_errors=True)


def _epoch_folders(directory: Path) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and EPOCH_FOLDER.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(EPOCH_FOLDER.fullmatch(p.name).group(1)))


def latest_checkpoint(directory: Path) -> Path | None:
    """The folder of the last complete checkpoint in ``directory`` (None if there is none)."""
    folders = _epoch_folders(directory)
    return folders[-1] if folders else None


def load_checkpoint(directory: Path, strategy=None) -> tuple[keras.Model, TrainState]:
    """Loads the last checkpoint of a run (weights, optimizer, state) under ``strategy``.

    Raises:
        UserError: no checkpoint, or one that cannot be read (truncated, edited, inconsistent).
    """
    folder = latest_checkpoint(directory)
    if folder is None:
        raise UserError(f"no checkpoint in {directory}: the run never finished an epoch there; start a new run "
                        "(or pass the --checkpoint-dir it was trained with)")
    try:
        raw = json.loads((folder / STATE_FILE).read_text())
        state = TrainState(epoch=int(raw["epoch"]), train_time_s=float(raw["train_time_s"]), history=list(raw["history"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"checkpoint {folder / STATE_FILE} is unreadable ({type(error).__name__}); "
                        "the run cannot be resumed from it: start a new run") from None
    if state.epoch != int(EPOCH_FOLDER.fullmatch(folder.name).group(1)) or len(state.history) != state.epoch:
        raise UserError(f"checkpoint {folder} is inconsistent (state says epoch {state.epoch}); start a new run")
    try:
        with _scope(strategy):
            model = keras.models.load_model(folder / CHECKPOINT_FILE, safe_mode=True)
    except Exception as error:  # noqa: BLE001  Keras raises many kinds for a damaged zip
        raise UserError(f"checkpoint {folder / CHECKPOINT_FILE} is unreadable ({type(error).__name__}); "
                        "the run cannot be resumed from it: start a new run") from None
    return model, state


@contextlib.contextmanager
def checkpoint_lock(directory: Path, run_id: str):
    """Holds an exclusive lock on the run's checkpoint folder while training it: a second
    process (a second ``--resume`` of the same run) is refused at once instead of logging every
    epoch twice. The lock dies with the process, so a ``kill -9`` leaves nothing to clean."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise UserError(f"run {run_id} is being trained right now by {holder}; wait for it to end "
                            "(or stop it) before resuming") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------- callbacks


class _EpochTraining(keras.callbacks.Callback):
    """Times training steps, drives the learning rate and the time budget, validates, checks
    for NaN and writes the checkpoint: everything an epoch needs before the caller logs it."""

    def __init__(self, config: TrainConfig, state: TrainState, val_pairs, checkpoint_dir: Path):
        super().__init__()
        self.config = config
        self.state = state
        self.val_pairs = val_pairs
        self.checkpoint_dir = checkpoint_dir
        self.stop_reason = "epochs"
        self._learning_rate = None
        self._traced = False  # whether this process has run a training step yet

    def _step_time_ms(self, epoch_train_s: float) -> float:
        """Mean wall time of a training step, in ms; the tracing first step excluded when the
        epoch has others (it stays in ``train_time_s``, which is what training really took)."""
        timed_steps = self._steps - self._timed_steps_skipped
        if timed_steps <= 0:
            return 1000.0 * epoch_train_s / max(self._steps, 1)
        return 1000.0 * (self._last_step_end - self._timed_from) / timed_steps

    # Progress through training, 0..1, by steps or by the time budget, whichever is further.
    def _progress(self, global_step: int, train_time_s: float) -> float:
        progress = global_step / self.config.total_steps
        if self.config.time_budget_s:
            progress = max(progress, train_time_s / self.config.time_budget_s)
        return progress

    def _set_learning_rate(self, progress: float) -> None:
        rate = learning_rate_at(progress, self.config.learning_rate)
        if rate != self._learning_rate:  # a variable assignment, only at the halving points
            self.model.optimizer.learning_rate.assign(rate)
            self._learning_rate = rate

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._steps = 0
        self._epoch_start = time.perf_counter()
        # The first step a process runs also traces (and maybe compiles) the graph: the step time
        # of that epoch is timed from the end of its first step.
        self._timed_from, self._timed_steps_skipped = self._epoch_start, 0
        self._set_learning_rate(self._progress(epoch * self.config.steps_per_epoch, self.state.train_time_s))

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        self._last_step_end = time.perf_counter()
        if self._steps == 1 and not self._traced:
            self._traced = True
            self._timed_from, self._timed_steps_skipped = self._last_step_end, 1
        elapsed = self.state.train_time_s + (self._last_step_end - self._epoch_start)
        global_step = self._epoch * self.config.steps_per_epoch + self._steps
        self._set_learning_rate(self._progress(global_step, elapsed))
        if self.config.time_budget_s and elapsed >= self.config.time_budget_s:
            self.stop_reason = "time_budget"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        epoch_train_s = self._last_step_end - self._epoch_start if self._steps else 0.0
        loss = float(logs.get("loss", math.nan))
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"training loss became {loss} in epoch {epoch + 1}; lower learning_rate "
                f"(now {self.config.learning_rate}) or use precision=float32"
            )
        scores = score_upscaler(model_upscaler(self.model), self.val_pairs, self.config.scale)
        means = mean_scores(scores)
        metrics = {
            "train_loss": loss,
            "val_psnr": means["psnr"],
            "val_ssim": means["ssim"],
            "val_psnr_rgb": means["psnr_rgb"],
            "step_time_ms": self._step_time_ms(epoch_train_s),
            "patches_per_s": self._steps * self.config.batch_size / epoch_train_s if epoch_train_s else 0.0,
            "learning_rate": float(self._learning_rate),
            "steps": float(self._steps),
        }
        self.state.epoch = epoch + 1
        self.state.train_time_s += epoch_train_s
        self.state.history.append(metrics)
        save_checkpoint(self.model, self.state, self.checkpoint_dir)
        logs.update(metrics)


# ---------------------------------------------------------------- training


def _every_worker_builds_the_same_batches():
    """Distributed training splits each global batch between replicas: every worker builds the
    same seeded batches and keeps its share (DATA sharding; there are no files to shard)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def train(
    config: TrainConfig,
    model: keras.Model,
    sr_data: SRData,
    checkpoint_dir: Path,
    *,
    state: TrainState | None = None,
    callbacks: tuple[keras.callbacks.Callback, ...] = (),
    verbose: int | None = None,
    strategy=None,
) -> TrainResult:
    """Trains ``model`` (fresh from :func:`build_model`, or from :func:`load_checkpoint`).

    Args:
        state: where a resumed run stands; ``None`` starts at epoch 1.
        callbacks: run after validation and checkpointing each epoch, so their ``logs``
            hold every metric of the epoch (``train_loss``, ``val_psnr``, ``step_time_ms``...).
        verbose: Keras verbosity; default a progress bar on a terminal, a line per epoch otherwise.
        strategy: the ``tf.distribute.Strategy`` the model was built under (None: the default).

    Returns:
        the trained model, its state (per-epoch metrics, training time) and the bicubic
        baseline on the same validation images.
    """
    state = state or TrainState()
    bicubic = score_upscaler(bicubic_upscaler(config.scale), sr_data.val_pairs, config.scale)
    bicubic_means = mean_scores(bicubic)
    epoch_training = _EpochTraining(config, state, sr_data.val_pairs, checkpoint_dir)
    batches = sr_data_module.training_batches(
        sr_data.train_images,
        scale=config.scale,
        patch_size=config.patch_size,
        batch_size=config.batch_size,
        seed=config.seed + state.epoch,  # a resumed run does not replay the same patches
    ).with_options(_every_worker_builds_the_same_batches())
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    time_left = not config.time_budget_s or state.train_time_s < config.time_budget_s
    if state.epoch < config.epochs and time_left:
        all_callbacks = [epoch_training, *callbacks]
        if _is_multiworker(strategy):
            _fit_multiworker(model, batches, strategy, config, all_callbacks, initial_epoch=state.epoch, verbose=verbose)
        else:
            model.fit(
                batches,
                epochs=config.epochs,
                initial_epoch=state.epoch,
                steps_per_epoch=config.steps_per_epoch,
                callbacks=all_callbacks,
                verbose=verbose,
                shuffle=False,  # the pipeline shuffles, seeded
            )
    return TrainResult(
        model=model,
        state=state,
        bicubic_val_psnr=bicubic_means["psnr"],
        bicubic_val_ssim=bicubic_means["ssim"],
        stop_reason=epoch_training.stop_reason if time_left else "time_budget",
    )


# ---------------------------------------------------------------- several hosts


def _is_multiworker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _fit_multiworker(model, batches, strategy, config: TrainConfig, callbacks, *, initial_epoch: int, verbose: int) -> None:
    """``model.fit`` for ``MultiWorkerMirroredStrategy``, which Keras 3's own ``fit`` cannot run
    (keras-team/keras#20585: it fails reducing the first batch). The same training as an
    explicit ``tf.distribute`` loop: L1 loss averaged over the global batch, the model's
    optimizer, the same callbacks called at the same points."""
    step = _distributed_train_step(model, strategy, config)
    iterator = iter(strategy.experimental_distribute_dataset(batches))
    callback_list = keras.callbacks.CallbackList(
        callbacks, model=model, add_progbar=verbose != 0, verbose=verbose, epochs=config.epochs, steps=config.steps_per_epoch,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, config.epochs):
        callback_list.on_epoch_begin(epoch)
        loss_sum, steps = 0.0, 0
        for batch in range(config.steps_per_epoch):
            callback_list.on_train_batch_begin(batch)
            loss_sum, steps = loss_sum + float(step(iterator)), steps + 1
            callback_list.on_train_batch_end(batch, {"loss": loss_sum / steps})  # the epoch's running mean, as fit logs it
            if model.stop_training:
                break
        callback_list.on_epoch_end(epoch, {"loss": loss_sum / steps})
        if model.stop_training:
            break
    callback_list.on_train_end()


def _distributed_train_step(model, strategy, config: TrainConfig):
    import tensorflow as tf

    def replica_step(lr_batch, hr_batch):
        with tf.GradientTape() as tape:
            sr_batch = tf.cast(model(lr_batch, training=True), tf.float32)
            per_patch = tf.reduce_mean(keras.losses.get(L1_LOSS)(tf.cast(hr_batch, tf.float32), sr_batch), axis=[1, 2])
            loss = tf.nn.compute_average_loss(per_patch, global_batch_size=config.batch_size)
            scaled = model.optimizer.scale_loss(loss)  # loss scaling under mixed_float16; identity otherwise
        gradients = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    @tf.function(jit_compile=precision_choice(config).xla)
    def step(iterator):
        per_replica = strategy.run(replica_step, args=next(iterator))
        return strategy.reduce("SUM", per_replica, axis=None)

    return step
