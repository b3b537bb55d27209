"""Temporary files: one scratch folder per command, removed when the command ends.

MLflow downloads a logged model (and every MLmodel file it inspects) into a fresh
``tempfile.mkdtemp()`` folder it never removes; TensorFlow Datasets leaves an empty ``tmp*tfds``
folder per dataset builder; TensorFlow's autograph writes a ``__autograph_generated_file*.py``
per traced function and removes it only at a clean interpreter exit. Left in the system's
temporary folder, a day of evaluations fills a disk. Pointing :mod:`tempfile` at a private folder
for the length of a command, and removing that folder at its end, returns all of it at once,
whatever library made it. Standard library only: the compare side imports this too.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PREFIX = "edsr-mlflow-"


@contextlib.contextmanager
def scratch_folder(prefix: str = PREFIX) -> Iterator[Path]:
    """A fresh folder under the system's temporary folder that :mod:`tempfile` hands out
    (``mkdtemp``, ``TemporaryDirectory``, ``NamedTemporaryFile``) while the block runs; removed,
    with whatever was left in it, when the block ends, by an exception too. Child processes keep
    the system's folder (``TMPDIR`` is not changed): each command makes its own scratch folder."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)
