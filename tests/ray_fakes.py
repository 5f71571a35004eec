"""Helpers for the Ray executor tests and benchmark: a picklable transport factory that builds
``ScriptedTransport`` on a Ray worker, and a local Ray instance with token auth (as Ray now
defaults) whose token lives in the environment, never in ~/.ray."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ScriptedFactory:
    """``cfg -> ScriptedTransport(**kwargs)``, run on each worker (``tests.fakes`` must be importable
    there: ``runtime_env()`` puts the repository root on the workers' PYTHONPATH)."""

    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, cfg):
        from tests.fakes import ScriptedTransport

        return ScriptedTransport(**self.kwargs)


def runtime_env() -> dict[str, Any]:
    return {"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}}


def token_auth_env() -> dict[str, str]:
    """A fresh token in the environment: a new local instance turns token auth on by default and
    finds the token there (the driver's children inherit it), so nothing is written to ~/.ray."""
    return {"RAY_AUTH_TOKEN": secrets.token_hex(32)}


def start_local_ray(num_cpus: int = 2):
    for k, v in token_auth_env().items():
        os.environ.setdefault(k, v)
    import ray
    os.environ["PYTHONPATH"] = runtime_env()["env_vars"]["PYTHONPATH"]  # workers inherit it from the raylet
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    return ray


@dataclass
class FlakyFactory:
    """Like ScriptedFactory, but every ``fail_every``-th call on a worker fails: transiently
    (a 503 the client retries) or, with ``fatal``, for good (an authentication error)."""

    fail_every: int = 3
    fatal: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, cfg):
        from tests.fakes import ScriptedTransport
        from treesynth.core.errors import ProviderError, TransientProviderError

        inner = ScriptedTransport(**self.kwargs)
        state = {"n": 0}
        fail_every, fatal = self.fail_every, self.fatal

        class Flaky:
            model = inner.model

            async def __call__(self, req):
                state["n"] += 1
                if fatal:
                    raise ProviderError("authentication failed for fake/scripted: no key on this worker")
                if state["n"] % fail_every == 0:
                    raise TransientProviderError("503 service unavailable", retry_after=0.0)
                return await inner(req)

        return Flaky()
