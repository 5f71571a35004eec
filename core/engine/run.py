"""What a run (``treesynth.core.run.Run``) needs from the engine's side: its transport for a config, and
the one line a failed write to the run directory becomes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import StorageError
from ..llm import make_local_transport


def storage_error(root: Path, e: BaseException) -> StorageError:
    """One line for a failed write: what failed, and that the run can be resumed once it is fixed."""
    if isinstance(e, OSError):
        what = e.strerror or str(e)
        if e.filename:
            what += f": {Path(str(e.filename)).name}"
    else:
        what = f"response cache: {' '.join(str(e).split())[:200]}"
    return StorageError(
        f"cannot write to run directory {str(root)!r} ({what}); everything up to the last finished call is saved;"
        f" fix the cause (free disk space, permissions) and resume with: treesynth run --resume {root}"
    )


def make_transport(cfg: RunConfig) -> Any:
    """The transport for ``cfg.executor``: in this process (the native OpenAI-compatible client or
    litellm, see ``make_local_transport``), or a pool of Ray workers (each making the same choice)."""
    if cfg.executor == "ray":
        from ..llm.transports.ray import RayTransport

        return RayTransport(cfg)
    return make_local_transport(cfg)
