"""Shared set-up for the benchmark scripts: where the images are, a throw-away tracking store."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

SHARED_DATA = Path(os.environ.get("EDSR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


# The CPU flags that decide how fast float32 and bfloat16 train: print them with every timing.
SHOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    import platform

    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags_line() -> str:
    """``CPU flags: avx2=yes ...`` and what ``precision=auto`` picks on this machine."""
    from edsr_mlflow import precision

    flags = precision.cpu_flags()
    shown = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in SHOWN_FLAGS)
    return f"CPU flags: {shown}\nprecision=auto here: {precision.choose_precision('auto', gpu_capability=None, flags=flags).reason}"


def require_shared_data() -> Path:
    if not (SHARED_DATA / "SunHays80").is_dir():
        raise SystemExit(f"benchmark images not found in {SHARED_DATA}; set EDSR_SHARED_DATA to the folder holding SunHays80/ and Set5/")
    return SHARED_DATA


@contextlib.contextmanager
def temporary_tracking_store() -> Iterator[Path]:
    """Points MLflow at a fresh SQLite store in a scratch folder, which is also where
    :mod:`tempfile` puts everything meanwhile (model downloads, autograph files); yields that
    folder, and removes it with all it holds when the block ends (a killed benchmark may leave
    one ``edsr-bench-*`` folder behind, a finished one none)."""
    from edsr_mlflow.scratch import scratch_folder

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    with scratch_folder(prefix="edsr-bench-") as folder:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
        try:
            yield folder
        finally:
            if previous is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous


def step_benchmark_data(shared: Path):
    """SunHays80 at x2 for the step-time benchmarks (precision_and_flops, threads), decoded into
    the in-memory cache once, so that no timed step pays for decoding."""
    from edsr_mlflow import data

    sr_data = data.load_sr_data(str(shared / "SunHays80"), 2, 32, val_dataset=str(shared / "Set5"))
    for _ in sr_data.train_images:
        pass
    return sr_data


def step_benchmark_batches(sr_data, seed: int):
    """The project's training stream for the step-time benchmarks: batch 16, LR patch 32."""
    from edsr_mlflow import data

    return data.training_batches(sr_data.train_images, scale=2, patch_size=32, batch_size=16, seed=seed)


def step_benchmark_model(precision: str, xla: bool):
    """The step-time benchmarks' model (x2, 8 blocks, 32 filters), compiled as training does."""
    from edsr_mlflow import training
    from edsr_mlflow.config import TrainConfig

    config = TrainConfig(dataset="unused", scale=2, blocks=8, filters=32, batch_size=16, patch_size=32,
                         learning_rate=1e-3, precision=precision)
    model = training.build_model(config)
    model.compile(optimizer=model.optimizer, loss=training.L1_LOSS, jit_compile=xla)
    return model


def timed_fit(model, batches, steps: int) -> tuple[float, float]:
    """``model.fit`` for ``steps + 1`` steps of ``batches``; returns wall and CPU seconds per
    step from the end of the first step to the end of the last. Not the whole call: its start
    (a new iterator filling its buffers) and its end are not training steps, and at the end
    tf.data's autotuning can hold the iterator's teardown until its next optimisation tick,
    seconds at times (``benchmarks/iterator_teardown.py``), which made whole-call timings land on
    10.24 s boundaries."""
    import keras

    class StepClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends: list[tuple[float, float]] = []  # (wall, CPU) at the end of each step

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append((time.perf_counter(), time.process_time()))

    clock = StepClock()
    model.fit(batches, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[clock])
    (wall_first, cpu_first), (wall_last, cpu_last) = clock.ends[0], clock.ends[-1]
    return (wall_last - wall_first) / steps, (cpu_last - cpu_first) / steps
