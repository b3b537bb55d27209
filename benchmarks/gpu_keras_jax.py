"""GPU step times and a budget pilot, with the project's own EDSR builder on Keras 3's JAX backend.

For a lent GPU machine that has JAX with CUDA but no TensorFlow (TensorFlow's GPU wheels are far
larger than what can be carried there). ``edsr_mlflow.model`` builds the same network on either
backend (its two small layers have a ``keras.ops`` path); nothing here needs TensorFlow or MLflow.

1. ``timing``: the EDSR baseline at x4 (16 blocks, 64 filters, LR patch 48, batch 16), one Adam
   + L1 training step, in float32, mixed_float16 and mixed_bfloat16, each XLA-compiled
   (``jit_compile=True``) and not, plus float32 with TF32 off (JAX's ``highest`` precision).
   All configurations are built and warmed up first, then timed in alternating rounds; the
   median of the rounds is reported, with achieved TFLOP/s (2 FLOPs per MAC, backward = 2x forward).
2. ``pilot``: does the upsamplers' ranking after 2,000 training steps hold after 6,000? The CPU
   study's settings (x4, 32 filters, LR patch 24, batch 16, learning rate 2e-3 halved at 50/75/90 %
   of the run, zero-initialised residual branches) on SunHays80, each budget a run of its own
   with its schedule ending annealed, scored on the hold-out (every 10th photo, centre crops of
   128x128 LR pixels so that one compiled graph serves every image), never on a test set.

    KERAS_BACKEND=jax python benchmarks/gpu_keras_jax.py timing pilot --data ../shared/data/SunHays80 --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from edsr_mlflow import edsr_pyfunc, images, metrics, model, sources  # noqa: E402
from edsr_mlflow.config import learning_rate_at  # noqa: E402

PILOT_VARIANTS = (
    dict(upsampler="subpixel"),
    dict(upsampler="subpixel", icnr=True),
    dict(upsampler="transpose", transpose_kernel=3),
    dict(upsampler="transpose", transpose_kernel=6),
    dict(upsampler="nearest"),
    dict(upsampler="bilinear"),
)


def device_facts() -> dict[str, str]:
    import jax

    device = jax.devices()[0]
    return {"device": f"{device.platform}:{getattr(device, 'device_kind', '?')}", "jax": jax.__version__,
            "keras": keras.__version__, "backend": keras.backend.backend(), "python": platform.python_version()}


def compiled_model(precision: str, jit: bool, learning_rate: float = 2e-3, **build) -> keras.Model:
    net = model.build_edsr(precision=precision, **build)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    net.compile(optimizer=optimizer, loss="mean_absolute_error", jit_compile=jit)
    return net


# ---------------------------------------------------------------- 1. step times


def timing(rounds: int, steps_jit: int, steps_eager: int) -> list[dict]:
    import jax

    rng = np.random.default_rng(0)
    lr_batch = jax.device_put(rng.uniform(0, 255, (16, 48, 48, 3)).astype(np.float32))
    hr_batch = jax.device_put(rng.uniform(0, 255, (16, 192, 192, 3)).astype(np.float32))
    configs = [(p, jit, "default") for p in ("float32", "mixed_float16", "mixed_bfloat16") for jit in (True, False)]
    configs.append(("float32", True, "highest"))
    baseline = dict(scale=4, blocks=16, filters=64, upsampler="subpixel")
    macs = model.macs_per_lr_pixel(model.build_edsr(**baseline))
    flops_per_step = 3 * 2 * macs * 48 * 48 * 16
    nets = {}
    for precision, jit, matmul in configs:
        keras.utils.set_random_seed(1)
        with jax.default_matmul_precision(matmul):
            net = compiled_model(precision, jit, **baseline)
            start = time.perf_counter()
            for _ in range(3 if jit else 1):
                net.train_on_batch(lr_batch, hr_batch)
            print(f"  warm-up {precision} jit={jit} {matmul}: {time.perf_counter() - start:.1f} s", flush=True)
        nets[(precision, jit, matmul)] = net
    times = {key: [] for key in nets}
    for round_index in range(rounds):
        for key, net in nets.items():
            steps = steps_jit if key[1] else steps_eager
            with jax.default_matmul_precision(key[2]):
                start = time.perf_counter()
                for _ in range(steps):
                    loss = net.train_on_batch(lr_batch, hr_batch)
                float(loss)  # waits for the device
            times[key].append((time.perf_counter() - start) / steps)
    rows = []
    for (precision, jit, matmul), values in times.items():
        step_s = statistics.median(values)
        rows.append({"precision": precision, "xla": jit, "matmul_precision": matmul, "step_ms": 1000 * step_s,
                     "steps_per_s": 1 / step_s, "tflops": flops_per_step / step_s / 1e12,
                     "rounds_ms": [round(1000 * v, 3) for v in values]})
        print(f"{precision:>15} xla={jit!s:<5} {matmul:<8} {1000 * step_s:8.2f} ms/step  {1 / step_s:7.1f} steps/s  "
              f"{flops_per_step / step_s / 1e12:6.1f} TFLOP/s", flush=True)
    return rows


# ---------------------------------------------------------------- 2. ranking pilot


def load_pairs(folder: Path, scale: int) -> tuple[list, list]:
    """(name, LR, HR) of the training photos and of the hold-out, split as training splits them."""
    def pair(path: Path):
        hr = images.crop_to_multiple(images.load_rgb(path), scale)
        return path.name, images.downscale(hr, scale), hr

    train, held, _, _ = sources.split_paths(str(folder), None)
    return [pair(p) for p in train], [pair(p) for p in held]


def centre_crops(pairs, scale: int, size: int):
    lr, hr = [], []
    for _, lr_image, hr_image in pairs:
        top, left = (lr_image.shape[0] - size) // 2, (lr_image.shape[1] - size) // 2
        lr.append(lr_image[top:top + size, left:left + size])
        hr.append(hr_image[top * scale:(top + size) * scale, left * scale:(left + size) * scale])
    return np.stack(lr).astype(np.float32), np.stack(hr)


def patch_batch(rng, train, scale: int, patch: int, batch: int):
    lr_out = np.empty((batch, patch, patch, 3), np.float32)
    hr_out = np.empty((batch, patch * scale, patch * scale, 3), np.float32)
    for i in range(batch):
        _, lr_image, hr_image = train[rng.integers(len(train))]
        top, left = rng.integers(lr_image.shape[0] - patch + 1), rng.integers(lr_image.shape[1] - patch + 1)
        lr_p = lr_image[top:top + patch, left:left + patch]
        hr_p = hr_image[top * scale:(top + patch) * scale, left * scale:(left + patch) * scale]
        k, flip = rng.integers(4), rng.integers(2)
        lr_p, hr_p = np.rot90(lr_p, k), np.rot90(hr_p, k)
        if flip:
            lr_p, hr_p = lr_p[:, ::-1], hr_p[:, ::-1]
        lr_out[i], hr_out[i] = lr_p, hr_p
    return lr_out, hr_out


def holdout_psnr(net, val_lr, val_hr, scale: int) -> float:
    sr = net.predict_on_batch(val_lr)
    return float(np.mean([metrics.psnr(hr, edsr_pyfunc.to_uint8(s), shave=scale) for hr, s in zip(val_hr, sr)]))


def pilot(data: Path, budgets: list[int], seeds: list[int], blocks: int, variants=PILOT_VARIANTS):
    """Yields one result row per (seed, budget, variant), as each run ends."""
    scale, patch, batch, base_rate = 4, 24, 16, 2e-3
    train, held = load_pairs(data, scale)
    val_lr, val_hr = centre_crops(held, scale, 128)
    bicubic = float(np.mean([metrics.psnr(hr, images.upscale_bicubic(lr.astype(np.uint8), scale), shave=scale)
                             for lr, hr in zip(val_lr, val_hr)]))
    print(f"pilot: {len(train)} training photos, {len(held)} held out; bicubic {bicubic:.3f} dB", flush=True)
    for seed in seeds:
        for budget in budgets:
            for variant in variants:
                keras.utils.set_random_seed(seed)
                net = compiled_model("float32", True, base_rate, scale=scale, blocks=blocks, filters=32, **variant)
                rng = np.random.default_rng(seed)  # the same patch stream for every variant of a seed
                start, rate = time.perf_counter(), None
                for step in range(budget):
                    new_rate = learning_rate_at(step / budget, base_rate)
                    if new_rate != rate:
                        net.optimizer.learning_rate.assign(new_rate)
                        rate = new_rate
                    loss = net.train_on_batch(*patch_batch(rng, train, scale, patch, batch))
                    if step % 1000 == 999:
                        print(f"    step {step + 1}: loss {float(loss):.3f}", flush=True)
                psnr = holdout_psnr(net, val_lr, val_hr, scale)
                label = model.run_name(scale, blocks, 32, **variant)
                yield {"seed": seed, "steps": budget, "variant": label, "holdout_psnr": psnr,
                       "gain": psnr - bicubic, "seconds": time.perf_counter() - start}
                print(f"  seed {seed} {budget:>5} steps {label:<32} {psnr:.3f} dB ({psnr - bicubic:+.3f}) "
                      f"{time.perf_counter() - start:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="+", choices=("timing", "pilot"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps-jit", type=int, default=50)
    parser.add_argument("--steps-eager", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "SunHays80")
    parser.add_argument("--budgets", default="2000,6000")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--variants", default="", help="Comma-separated run-name suffixes to keep, e.g. subpixel,subpixel_icnr (empty: all).")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = {"facts": device_facts()}
    print(result["facts"], flush=True)
    if "timing" in args.parts:
        result["timing"] = timing(args.rounds, args.steps_jit, args.steps_eager)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    if "pilot" in args.parts:
        result["pilot"] = []
        budgets, seeds = [int(b) for b in args.budgets.split(",")], [int(s) for s in args.seeds.split(",")]
        wanted = [v for v in args.variants.split(",") if v]
        variants = [v for v in PILOT_VARIANTS if not wanted or model.run_name(4, args.blocks, 32, **v).split("_f32_")[1] in wanted]
        for row in pilot(args.data, budgets, seeds, args.blocks, variants):
            result["pilot"].append(row)
            if args.out:  # after every run: a run cut short by its time limit keeps what finished
                args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
