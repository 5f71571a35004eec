"""``--executor ray``: generation calls run on a pool of Ray actors, everything else stays on the driver.

The driver keeps the whole run: tree growth and validation, the LLM client (response cache,
budget, the global ``--concurrency`` semaphore, RPM/TPM limits, retries with backoff), the run
directory and the events. Only the provider call itself leaves the process: ``RayTransport``
implements the ``Transport`` protocol (core/llm/types.py), so ``LLMClient`` gates every call exactly as on the local
executor, and the cluster as a whole respects ``--concurrency``, ``--rpm`` and ``--tpm``
(they are enforced once, on the driver, before a call is dispatched).

Workers are async Ray actors spread over the nodes (``SPREAD``). Each builds its own transport
from the run's config *without secrets* (``cfg.redacted()``): ``make_local_transport`` by default
(the native OpenAI-compatible client for openai/ and hosted_vllm/ models, else litellm), so
a worker reads API keys from its own environment, calls its own node's server when ``api_base``
is a local address, and with ``local/smollm2`` loads its own copy of the embedded model (with
``TREESYNTH_LOCAL_THREADS`` set to the CPUs it reserved). A call is sent to the least-loaded
actor; its answer comes back to the driver, which parses it, appends the rows and writes the
cache, exactly as the local executor does (results stream back per call, so per leaf).

Failures lose nothing. Actors restart without limit and Ray retries the calls that were in
flight on a crashed worker (``max_task_retries``); anything Ray still reports (actor died, node
lost, object lost) becomes a ``TransientProviderError`` that ``LLMClient`` retries with backoff.
A generation call only writes rows when its answer reaches the driver, and its slot id
(``<leaf>:gen:<slot>``), seed and cache key are deterministic, so a retried call can neither
duplicate nor shift a row.

Ray is an optional extra (``pip install 'treesynth[ray]'``); it is imported only here, lazily.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError, ProviderError, ProviderTimeout, TransientProviderError, first_line
from ..types import Completion, LLMRequest, Transport

if TYPE_CHECKING:
    from ...config import RunConfig

INSTALL_HINT = "--executor ray needs Ray, an optional extra: pip install 'treesynth[ray]'"
STARTUP_TIMEOUT_S = float(os.environ.get("TREESYNTH_RAY_STARTUP_TIMEOUT", "180"))

TransportFactory = Callable[["RunConfig"], Transport]  # called on the worker

_started_here = False  # this process started (or joined) Ray through connect(): shut it down when the last pool closes
_open_pools = 0


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to the cluster at ``address`` ("auto": the one running on this machine), or start a
    local instance when there is no address. Returns True when this call did it (the last
    ``RayTransport`` to close then shuts Ray down, which only disconnects from a cluster it joined);
    False when Ray was already initialised in this process (by the caller, who shuts it down)."""
    global _started_here
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        kwargs["address"] = address
    elif num_cpus:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except ConnectionError as e:
        where = "on this machine (--ray-address auto)" if address == "auto" else f"at {address}"
        raise ProviderError(
            f"no Ray cluster reachable {where}: {first_line(e, 240)}; start one with `ray start --head`, "
            "or leave out --ray-address to start a local instance"
        ) from None
    except Exception as e:  # noqa: BLE001 - auth failures, bad addresses...: one line
        if "auth" in type(e).__name__.lower() or "token" in str(e).lower():
            raise ProviderError(
                f"the Ray cluster refused the connection: {first_line(e, 240)} (token auth: set RAY_AUTH_TOKEN or "
                "RAY_AUTH_TOKEN_PATH to the cluster's token)"
            ) from None
        raise ProviderError(f"cannot start or join Ray: {type(e).__name__}: {first_line(e, 240)}") from None
    _started_here = True
    return True


class PoolLease:
    """One user of the Ray instance (a transport's pool, the gates' embedding actors): connects on creation
    (``connect``); ``release`` is idempotent, and the last lease of an instance this process started shuts
    it down (several runs may share one, e.g. in the TUI)."""

    def __init__(self, address: str | None = None) -> None:
        global _open_pools
        self.ray = import_ray()
        connect(address)
        _open_pools += 1
        self._held = True

    def release(self) -> None:
        global _open_pools, _started_here
        if not self._held:
            return
        self._held = False
        _open_pools -= 1
        if _open_pools == 0 and _started_here:
            _started_here = False
            try:
                self.ray.shutdown()
            except Exception:  # noqa: BLE001
                pass


def _default_factory(cfg: RunConfig) -> Transport:
    from ..select import make_local_transport

    return make_local_transport(cfg)  # the driver's choice: the native OpenAI-compatible client or litellm


class _Worker:
    """One Ray actor: its own transport (and so its own async client or embedded model)."""

    def __init__(self, cfg_dict: dict[str, Any], factory: TransportFactory | None, threads: int | None) -> None:
        from ...config import RunConfig

        if threads:
            os.environ["TREESYNTH_LOCAL_THREADS"] = str(threads)
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        cfg = RunConfig.model_validate(cfg_dict)
        self.transport = (factory or _default_factory)(cfg)
        self.calls = 0

    def ready(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    async def call(self, req: LLMRequest) -> tuple[Any, ...]:
        """("ok", Completion) | ("transient", message, retry_after, timeout, unreachable, partial) | ("fatal", message).

        Errors travel as values: no exception class has to survive pickling across processes (``timeout``:
        it was a ``ProviderTimeout``; ``unreachable`` and ``partial``: its attributes)."""
        self.calls += 1
        try:
            c = await self.transport(req)
        except TransientProviderError as e:
            return ("transient", str(e), e.retry_after, isinstance(e, ProviderTimeout), e.unreachable, e.partial)
        except ProviderError as e:
            return ("fatal", str(e))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - unknown failures are retried, bounded by the driver
            return ("transient", f"{type(e).__name__}: {first_line(e, 240)}", None)
        return ("ok", c)

    def stats(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "calls": self.calls}


class RayTransport:
    """A ``Transport`` whose calls run on Ray actors (see the module docstring).

    ``workers``: number of actors (default: ``cfg.ray_workers``, else one per alive node).
    ``transport_factory``: picklable ``cfg -> Transport`` run on each worker (default
    ``make_local_transport``; tests pass a scripted fake). ``worker_cpus``: CPUs each actor reserves
    (default: the cluster's CPUs divided among the workers for ``local/`` models, whose
    llama.cpp threads follow it; 0 for remote providers, whose calls only wait on the network).
    ``model``: the name used in cache keys (default ``cfg.model``, as on the local executor).
    """

    def __init__(
        self,
        cfg: RunConfig,
        *,
        workers: int | None = None,
        transport_factory: TransportFactory | None = None,
        address: str | None = None,
        worker_cpus: float | None = None,
        runtime_env: dict[str, Any] | None = None,
        model: str | None = None,
        max_task_retries: int = 3,
    ) -> None:
        if cfg.router and "<redacted>" in repr(cfg.redacted().get("router")):
            raise ConfigError(
                "with --executor ray the router's API keys must be os.environ/NAME references: "
                "workers read keys from their own environment, never from the driver"
            )
        self.model = model or cfg.model
        self._actors: list[Any] = []
        self._lease = PoolLease(address if address is not None else cfg.ray_address)
        ray = self._ray = self._lease.ray
        try:
            n = workers or cfg.ray_workers or self._alive_nodes()
            n = max(1, int(n))
            total_cpus = float(ray.cluster_resources().get("CPU", 1.0))
            local = cfg.model.startswith("local/") and transport_factory is None
            if worker_cpus is None:
                worker_cpus = float(max(1, int(total_cpus // n))) if local else 0.0
            threads = max(1, int(worker_cpus)) if local else None
            share = max(1, math.ceil(cfg.concurrency / n))
            actor_cls = ray.remote(_Worker)
            opts: dict[str, Any] = {
                "num_cpus": worker_cpus, "max_restarts": -1, "max_task_retries": max_task_retries,
                "max_concurrency": share + 2, "scheduling_strategy": "SPREAD",
            }
            if runtime_env:
                opts["runtime_env"] = runtime_env
            cfg_dict = cfg.redacted()
            self._actors = [actor_cls.options(**opts).remote(cfg_dict, transport_factory, threads) for _ in range(n)]
            self.workers = self._wait_ready(n, worker_cpus)
        except BaseException:
            self.close()
            raise
        self._load = [0] * n
        self._rr = itertools.cycle(range(n))
        self.share = share

    # ---- pool --------------------------------------------------------------
    def _alive_nodes(self) -> int:
        return max(1, sum(1 for nd in self._ray.nodes() if nd.get("Alive") and nd.get("Resources", {}).get("CPU", 0) > 0))

    def _wait_ready(self, n: int, cpus: float) -> list[dict[str, Any]]:
        ray = self._ray
        refs = [a.ready.remote() for a in self._actors]
        try:
            return ray.get(refs, timeout=STARTUP_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise ProviderError(
                f"{n} Ray worker(s) did not start within {STARTUP_TIMEOUT_S:g} s; each reserves {cpus:g} CPU "
                f"(the cluster has {ray.cluster_resources().get('CPU', 0):g}): lower --ray-workers"
            ) from None
        except ray.exceptions.RayError as e:
            raise ProviderError(f"Ray workers failed to start: {type(e).__name__}: {first_line(e, 240)}") from None

    def _pick(self) -> int:
        """The least-loaded actor; ties go round-robin so an idle pool is used evenly."""
        start = next(self._rr)
        n = len(self._load)
        return min(((start + k) % n for k in range(n)), key=lambda i: self._load[i])

    # ---- Transport -----------------------------------------------------------
    async def __call__(self, req: LLMRequest) -> Completion:
        ray = self._ray
        i = self._pick()
        self._load[i] += 1
        ref = None
        try:
            ref = self._actors[i].call.remote(req)
            out = await ref
        except asyncio.CancelledError:
            if ref is not None:
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - best effort: the answer would be dropped anyway
                    pass
            raise
        except (ray.exceptions.RuntimeEnvSetupError, ray.exceptions.ActorUnschedulableError) as e:
            raise ProviderError(f"Ray worker cannot run: {type(e).__name__}: {first_line(e, 240)}") from None
        except ray.exceptions.RayError as e:
            # worker or node died, object lost...: Ray already retried what it could; the client retries
            raise TransientProviderError(f"Ray worker lost ({type(e).__name__}): {first_line(e, 160)}", retry_after=0.5) from None
        finally:
            self._load[i] -= 1
        kind = out[0]
        if kind == "ok":
            return out[1]
        if kind == "transient":
            cls = ProviderTimeout if len(out) > 3 and out[3] else TransientProviderError
            raise cls(out[1], out[2], unreachable=bool(out[4]) if len(out) > 4 else False, partial=out[5] if len(out) > 5 else None)
        raise ProviderError(out[1])

    # ---- introspection, shutdown ---------------------------------------------
    def actors(self) -> list[Any]:
        return list(self._actors)

    def stats(self) -> list[dict[str, Any]]:
        return self._ray.get([a.stats.remote() for a in self._actors], timeout=60)

    def close(self) -> None:
        """Kill this pool's actors; the last pool to close shuts down a Ray instance this process
        started (several runs may share one, e.g. in the TUI)."""
        ray = self._ray
        for a in self._actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        self._actors = []
        self._lease.release()
