"""Real tracking servers for tests: `mlflow server` processes on 127.0.0.1 over SQLite or a
throw-away PostgreSQL database, started and stopped like a user would."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
import requests

POSTGRES_ENV = "EDSR_TEST_POSTGRES_URI"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(backend_uri: str, artifacts: Path, *, port: int | None = None, extra_args: tuple[str, ...] = (),
                        env: dict[str, str] | None = None, log_file: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Starts `mlflow server` (artifacts served by it) and waits for /health; returns it and its URI."""
    port = port or free_port()
    log = open(log_file, "ab") if log_file else subprocess.DEVNULL
    # Without MLflow's job runner (GenAI jobs, a queue of ten workers): nothing here uses it.
    env = {**(env if env is not None else os.environ), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", backend_uri, "--serve-artifacts", "--artifacts-destination", str(artifacts), *extra_args],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,  # its own group: stop takes the workers too
    )
    uri = f"http://127.0.0.1:{port}"
    for _ in range(480):  # a hang guard, not a speed test
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.returncode}" + (f"; see {log_file}" if log_file else ""))
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{uri}/health", timeout=1).ok:
                return server, uri
        time.sleep(0.25)
    stop_mlflow_server(server)
    pytest.fail("mlflow server did not answer /health in 2 minutes")


def stop_mlflow_server(server: subprocess.Popen) -> None:
    """Stops the server and its workers (the whole process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@contextlib.contextmanager
def postgres_database():
    """A fresh PostgreSQL database for one test, dropped afterwards; yields its SQLAlchemy URI.

    Needs ``EDSR_TEST_POSTGRES_URI`` (a role allowed to create databases):
    ``scripts/tracking_server.sh postgres`` prints one, and .ci/run sets it.
    """
    base_uri = os.environ.get(POSTGRES_ENV)
    if not base_uri:
        pytest.skip(f"no PostgreSQL: set {POSTGRES_ENV} (`scripts/tracking_server.sh postgres` prints it; CI sets it)")
    if not base_uri.startswith("postgresql://") or "\n" in base_uri:
        pytest.fail(f"{POSTGRES_ENV} is not one postgresql:// URI: {base_uri!r}")
    import psycopg

    name = f"edsr_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(base_uri, autocommit=True)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        yield urlunparse(urlparse(base_uri)._replace(path=f"/{name}"))
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()
