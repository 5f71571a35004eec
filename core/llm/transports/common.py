"""What every transport shares: a provider's Retry-After, an error body as one line, the open-files limit."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import orjson


def retry_after_from_headers(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date); None if absent or malformed."""
    if not headers:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return float(ms) / 1000.0
        ra = headers.get("retry-after")
        if ra is None:
            return None
        try:
            return max(0.0, float(ra))
        except ValueError:
            dt = email.utils.parsedate_to_datetime(ra)
            return max(0.0, dt.timestamp() - time.time())
    except Exception:  # noqa: BLE001 - a malformed header is just ignored
        return None


def raise_open_files_limit(want: int) -> None:
    """Each connection is a file descriptor; a soft limit of 1024 (a common default) breaks high concurrency."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        pass


def error_message(raw: bytes, limit: int = 300) -> str:
    """The provider's one-line message from an error body ({"error": {"message": ...}}, {"message": ...}, {"detail": ...})."""
    msg: Any = None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error", doc)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or err.get("msg")
        elif isinstance(err, str):
            msg = err
        if msg is None and isinstance(doc.get("detail"), (str, list)):
            msg = doc["detail"]
    if msg is None:
        msg = raw.decode("utf-8", "replace")
    s = " ".join(str(msg).split())
    return s[:limit] or "(no message)"


def openai_headers(key: str | None, openai: bool) -> dict[str, str]:
    """The headers of a request to an OpenAI-compatible endpoint: JSON, our User-Agent, the bearer key
    when there is one, and for OpenAI itself the organisation and project from the environment."""
    import os

    from ... import __version__

    h = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": f"treesynth/{__version__}"}
    if key:
        h["Authorization"] = f"Bearer {key}"
    if openai:
        org = os.environ.get("OPENAI_ORGANIZATION") or os.environ.get("OPENAI_ORG_ID")
        project = os.environ.get("OPENAI_PROJECT_ID")
        if org:
            h["OpenAI-Organization"] = org
        if project:
            h["OpenAI-Project"] = project
    return h


def env_proxy(url: str) -> tuple[Any, Any]:
    """(proxy URL, its auth) for ``url`` from HTTP(S)_PROXY / NO_PROXY, or (None, None): read once per session.
    aiohttp's ``trust_env`` would read them, and the netrc file in a worker thread, on every request."""
    try:
        import aiohttp
        from yarl import URL

        return aiohttp.helpers.get_env_proxy_for_url(URL(url))
    except (LookupError, AttributeError, ValueError):
        return None, None
