"""Peak memory of a served model (`mlflow models serve`) answering one large request.

The request of issue 38: one 4000x3000 RGB image as JSON integers (about 150 MB of body), sent
to a tiny logged model (x2, 1 block, 8 filters) served on 127.0.0.1. Two servers in turn: with
the model's default ``max_pixels`` (4,000,000 LR pixels: the request is refused with HTTP 400,
after MLflow has read and parsed the body), and with ``max_pixels`` raised past the image
(``MLFLOW_PYFUNC_INFERENCE_CONFIG``: answered, tile by tile), each with MLflow's request timeout
raised to 1,200 s so that the peak is that of the whole request. The server's processes are
sampled every 50 ms while the request runs; the figure is the largest resident size of one of
them (the worker that parses and predicts).

    python benchmarks/serve_memory.py [--width 4000] [--height 3000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags_line, temporary_tracking_store  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_colour_body(width: int, height: int) -> bytes:
    """``{"inputs": [image]}`` for a (1, height, width, 3) image of one colour, as JSON integers."""
    row = "[" + ",".join(["[40,90,200]"] * width) + "]"
    return ('{"inputs": [[' + ",".join([row] * height) + "]]}").encode()


@contextlib.contextmanager
def served(model_uri: str, env: dict[str, str], log_file: Path):
    """`mlflow models serve` of ``model_uri`` on 127.0.0.1; yields (its URL, its process)."""
    import requests

    port = free_port()
    with open(log_file, "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/ping", timeout=2).ok:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {log_file.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def peak_during(server: subprocess.Popen, work) -> tuple[float, object]:
    """(the largest resident GB of one process of ``server``'s tree while ``work()`` runs, its result)."""
    import psutil

    root, peak, done = psutil.Process(server.pid), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = work()
    finally:
        done.set()
        sampler.join()
    return peak[0] / 1e9, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args()

    import mlflow
    import requests

    from edsr_mlflow import edsr_pyfunc, model, model_logging

    print(cpu_flags_line(), flush=True)
    with temporary_tracking_store() as folder:
        with mlflow.start_run() as run:
            model_logging.log_keras_model(model.build_edsr(scale=2, blocks=1, filters=8))
        model_uri = f"runs:/{run.info.run_id}/model"
        body = one_colour_body(args.width, args.height)
        pixels = args.width * args.height
        print(f"request: one {args.width}x{args.height} image, {len(body) / 1e6:.0f} MB of JSON; model x2, 1 block, 8 filters", flush=True)
        settings = [("default max_pixels", {}),
                    ("max_pixels raised", {"MLFLOW_PYFUNC_INFERENCE_CONFIG": json.dumps({"max_pixels": pixels})})]
        for name, extra in settings:
            # MLflow answers 504 after 60 s and goes on working: give the request its whole time.
            # TMPDIR: the server's copy of the model goes with the benchmark's folder.
            env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                   "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": "1200", "TMPDIR": str(folder), **extra}
            with served(model_uri, env, folder / "serve.log") as (url, server):
                idle = peak_during(server, lambda: time.sleep(1))[0]
                start = time.perf_counter()
                peak, answer = peak_during(server, lambda: requests.post(
                    f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=1200))
                seconds = time.perf_counter() - start
            config = {**edsr_pyfunc.DEFAULT_CONFIG, **json.loads(extra.get("MLFLOW_PYFUNC_INFERENCE_CONFIG", "{}"))}
            limit = config["max_pixels"]
            print(f"{name} ({limit:,}): HTTP {answer.status_code} in {seconds:.0f} s, {len(answer.content) / 1e6:.0f} MB answered; "
                  f"largest server process {peak:.2f} GB resident at its peak ({idle:.2f} GB idle); "
                  f"{answer.text[:160] if answer.status_code != 200 else ''}", flush=True)


if __name__ == "__main__":
    main()
