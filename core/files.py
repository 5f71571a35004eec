"""Durable files: whole-or-nothing writes and appends, and the checks a run directory passes before
a run is made in it or opened from it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from .errors import RunDirError
from .rundir import CONFIG


def occupied(root: Path) -> bool:
    """True when ``root`` exists and is not an empty directory (a new run may not go there)."""
    root = Path(root)
    return root.exists() and (not root.is_dir() or any(root.iterdir()))


def ensure_new_run_dir(root: Path) -> None:
    if occupied(root):
        raise RunDirError(f"{str(root)!r} already exists and is not empty; choose another --out or --resume it")


def discard_new_run_dir(root: Path, existed: bool) -> None:
    """Undo a run directory made moments ago whose run could not be set up: removed, or emptied again when
    it was an empty folder before. Best effort: what cannot be removed stays."""
    import shutil

    if not existed:
        shutil.rmtree(root, ignore_errors=True)
        return
    for child in Path(root).iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def append_all(f: BinaryIO, data: bytes) -> None:
    """Append ``data`` to an unbuffered file: all of it, or nothing.

    A short write (disk full, file size limit) is continued, so the failure surfaces as an
    OSError; on failure the file is cut back to where it was, so no torn line is left behind
    for later appends to follow (a torn line in the middle of a file would be corruption).
    """
    start = f.tell()
    try:
        view = memoryview(data)
        while view:
            n = f.write(view)
            if n is None:  # non-blocking file: cannot happen for regular files
                raise BlockingIOError(0, "write would block")
            view = view[n:]
    except OSError:
        try:
            f.truncate(start)
            f.seek(start)
        except OSError:
            pass
        raise


def check_run_dir(root: Path) -> None:
    """The one check before resuming or opening a run: it exists, is a directory and holds a run."""
    root = Path(root)
    if not root.exists():
        raise RunDirError(f"{str(root)!r} does not exist")
    if not root.is_dir():
        raise RunDirError(f"{str(root)!r} is not a directory")
    if not (root / CONFIG).is_file():
        raise RunDirError(f"{str(root)!r} is not a treesynth run (no config.json)")
