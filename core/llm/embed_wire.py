"""The OpenAI embeddings wire format: ``POST {api_base}/embeddings`` with ``{"model", "input": [texts]}``,
answered by ``{"data": [{"index", "embedding"}], "usage": {"prompt_tokens"}}`` (OpenAI, vLLM, llama.cpp's
and llama-cpp-python's servers started with embeddings on). Shared by the endpoint embedder's calls
(core/quality/embed_endpoint.py, aiohttp) and the preflight's one-text probe (the standard library's
client, before any directory is written): both resolve the endpoint, read the answer and tell a
deterministic error from a transient one alike.

Where: ``embed_api_base``, else ``$OPENAI_BASE_URL`` / ``$OPENAI_API_BASE``, else api.openai.com
(``hosted_vllm/``: ``embed_api_base`` or ``$HOSTED_VLLM_API_BASE``). The key comes from the environment
only (``OPENAI_API_KEY``; ``HOSTED_VLLM_API_KEY``), never from the config, and is never written anywhere.
"""

from __future__ import annotations

import binascii
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from pybase64 import b64decode  # SIMD base64: the stdlib's decoder took ~0.4 s of the event loop per 100k rows

from ..errors import ConfigError, ProviderError, TransientProviderError
from .structured import RETRYABLE_STATUS
from .transports.common import error_message, openai_headers, retry_after_from_headers

if TYPE_CHECKING:
    import numpy as np

OPENAI_BASE = "https://api.openai.com/v1"


@dataclass(frozen=True)
class EmbedEndpoint:
    """Where an endpoint embedder's calls go. ``model``: the run's ``provider/model`` (messages, prices);
    ``wire_model``: the name sent."""

    model: str
    wire_model: str
    api_base: str
    key: str | None = field(default=None, repr=False)
    # ask for ``encoding_format: base64`` (float32 bytes; measured for 256 vectors of 1536: a 2.1 MB body read in
    # 13 ms, against 7.7 MB and 47 ms as JSON numbers). A server that ignores the field answers float lists,
    # which are read as well; one that rejects it (``rejects_base64``) is asked again without it.
    base64: bool = True

    @property
    def url(self) -> str:
        return self.api_base + "/embeddings"

    def headers(self) -> dict[str, str]:
        return openai_headers(self.key, self.model.startswith("openai/"))

    def scrub(self, s: str) -> str:
        key = self.key
        return s.replace(key, "<redacted>") if key and len(key) >= 8 and key in s else s

    def missing_key(self) -> str | None:
        """Why no call can succeed for want of a key (None: a key is set, or the endpoint is not OpenAI's)."""
        if self.key is None and self.api_base.startswith(OPENAI_BASE):
            return f"missing API key for the embedder {self.model}: set OPENAI_API_KEY in the environment (or give --embed-api-base)"
        return None


def resolve_endpoint(model: str, api_base: str | None = None) -> EmbedEndpoint:
    """The endpoint ``model`` (``openai/<name>`` or ``hosted_vllm/<name>``) is called at."""
    provider, _, wire = model.partition("/")
    if provider == "hosted_vllm":
        base = api_base or os.environ.get("HOSTED_VLLM_API_BASE")
        key = os.environ.get("HOSTED_VLLM_API_KEY") or None
        if not base:
            raise ConfigError(f"the embedder {model} needs --embed-api-base (or HOSTED_VLLM_API_BASE)")
    else:
        base = api_base or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE") or OPENAI_BASE
        key = os.environ.get("OPENAI_API_KEY") or None
    base = base.rstrip("/")
    return EmbedEndpoint(model, wire, base, key)


def rejects_base64(status: int, raw: bytes) -> bool:
    """Whether an error answer refuses ``encoding_format: base64`` (a server that validates its requests
    strictly and knows only float lists): the request is sent again without it."""
    low = error_message(raw).lower()
    return status in (400, 422) and ("encoding_format" in low or "base64" in low)


# OpenAI's embeddings take at most 300,000 tokens summed over one request's inputs (a larger one is refused
# with HTTP 400, on every try); a request is planned at most REQUEST_TOKENS by ``text_tokens``
REQUEST_TOKENS = 250_000


def text_tokens(text: str) -> int:
    """A high estimate of a text's tokens: half its UTF-8 bytes. English runs ~4 bytes a token, code ~3, Chinese
    ~2.3 (3 bytes a character, ~1.3 tokens each in cl100k); only text of emoji runs denser."""
    return (len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))) // 2 + 1


def request_chunks(sizes: Sequence[int], max_rows: int, max_tokens: int = REQUEST_TOKENS) -> list[tuple[int, int]]:
    """The requests texts of ``sizes`` estimated tokens (``text_tokens``, in order) go in, as (start, end) ranges:
    at most ``max_rows`` texts and ``max_tokens`` tokens each, unless one text is that long alone, in which case
    it goes by itself."""
    out: list[tuple[int, int]] = []
    a = 0
    tokens = 0
    for i, n in enumerate(sizes):
        if i > a and (i - a >= max_rows or tokens + n > max_tokens):
            out.append((a, i))
            a, tokens = i, 0
        tokens += n
    if a < len(sizes):
        out.append((a, len(sizes)))
    return out


def request_spans(texts: Sequence[str], max_rows: int, max_tokens: int = REQUEST_TOKENS) -> list[tuple[int, int]]:
    """``request_chunks`` of ``texts``, by their ``text_tokens``; when even the whole lot's high estimate fits one
    request's tokens (the usual case: a gate batch of GSM8K-sized rows), by rows alone, without a size a text."""
    if text_tokens("".join(texts)) - 1 + len(texts) <= max_tokens:  # at least the sum of every text's ``text_tokens``
        step = max(1, max_rows)
        return [(a, min(a + step, len(texts))) for a in range(0, len(texts), step)]
    return request_chunks([text_tokens(t) for t in texts], max_rows, max_tokens)


def request_body(wire_model: str, texts: Sequence[str], base64: bool = False) -> bytes:
    body: dict[str, Any] = {"model": wire_model, "input": list(texts)}
    if base64:
        body["encoding_format"] = "base64"
    return orjson.dumps(body)


@dataclass(frozen=True)
class Embeddings:
    """An answer: the vectors in input order (float32 as sent, not normalised), ``usage.prompt_tokens``
    (None: not given), and whether the server sent per-token vectors (a model without pooling), mean-pooled here."""

    vectors: np.ndarray
    prompt_tokens: int | None
    per_token: bool = False


def _matrix(rows: list[Any]) -> tuple[Any, bool]:
    """(the (n, dim) float32 matrix, whether any item was per-token vectors, mean-pooled); ValueError,
    TypeError or binascii.Error when the items are not vectors of one length."""
    import numpy as np

    if rows and all(isinstance(e, str) for e in rows):  # base64 (little-endian float32), the usual answer: one buffer
        chars = len(rows[0])
        width = chars // 4 * 3
        if chars % 4 == 0 and width % 4 == 0 and not rows[0].endswith("=") and all(len(e) == chars for e in rows):
            try:  # one strict decode of them all: no row pads, so the rows decode in step
                buf = b64decode("".join(rows), validate=True)
            except binascii.Error:
                buf = b""
            if len(buf) == len(rows) * width:
                return np.frombuffer(buf, dtype="<f4").reshape(len(rows), width // 4), False
        raw_rows = [b64decode(e) for e in rows]
        width = len(raw_rows[0])
        if width % 4 or any(len(r) != width for r in raw_rows):
            raise ValueError("vectors of different lengths")
        return np.frombuffer(b"".join(raw_rows), dtype="<f4").reshape(len(rows), width // 4), False
    per_token = False
    vecs = []
    for e in rows:
        if isinstance(e, str):
            vecs.append(np.frombuffer(b64decode(e), dtype="<f4"))
        elif isinstance(e, list) and e and isinstance(e[0], list):  # per-token vectors: mean-pooled
            per_token = True
            vecs.append(np.asarray(e, dtype=np.float32).mean(axis=0))
        else:
            vecs.append(np.asarray(e, dtype=np.float32))
    return (np.stack(vecs) if vecs else np.zeros((0, 0), dtype=np.float32)), per_token


def _placed(data: list[Any], n: int, where: str) -> list[Any]:
    """Each item's embedding at its ``index`` (its position without one), every index checked."""
    rows: list[Any] = [None] * n
    for pos, item in enumerate(data):
        if not isinstance(item, dict):
            raise TransientProviderError(f"malformed answer from {where}: an embedding is not an object")
        i = item.get("index", pos)
        if not isinstance(i, int) or not 0 <= i < n or rows[i] is not None:
            raise TransientProviderError(f"malformed answer from {where}: bad or repeated index {i!r}")
        rows[i] = item.get("embedding")
    return rows


def parse_embeddings(raw: bytes, n: int, where: str) -> Embeddings:
    """The answer to ``n`` texts, in input order (by each item's ``index``). An item of per-token vectors (a
    llama.cpp server on a model without pooling) is mean-pooled. A malformed answer is transient."""
    import numpy as np

    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TransientProviderError(f"malformed answer from {where}: the body is not JSON") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or len(data) != n:
        got = len(data) if isinstance(data, list) else "no"
        raise TransientProviderError(f"malformed answer from {where}: {got} embeddings for {n} texts")
    try:  # the usual answer: objects in input order (two list passes instead of a checked step an item)
        in_order = [item.get("index") for item in data] == list(range(n))
    except AttributeError:  # an item that is not an object: the checks below say so
        in_order = False
    rows: list[Any] = [item.get("embedding") for item in data] if in_order else _placed(data, n, where)
    try:
        X, per_token = _matrix(rows)
    except (TypeError, ValueError, binascii.Error):
        raise TransientProviderError(f"malformed answer from {where}: embeddings that are not lists of numbers of one length") from None
    if X.ndim != 2 or (n and X.shape[1] == 0) or not np.isfinite(X).all():
        raise TransientProviderError(f"malformed answer from {where}: empty or non-finite embeddings")
    usage = doc.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return Embeddings(X, tokens if isinstance(tokens, int) and tokens > 0 else None, per_token)


def error_for(status: int, raw: bytes, headers: Mapping[str, str] | None, ep: EmbedEndpoint) -> Exception:
    """The error a non-200 answer is: ``TransientProviderError`` (worth retrying; 429 and 5xx, with the
    server's Retry-After) or ``ProviderError`` with one line (retrying cannot help)."""
    msg = ep.scrub(error_message(raw))
    low = msg.lower()
    if "embedding" in low and ("must be created with embedding" in low or "not enabled" in low or "does not support embedding" in low):
        # llama-cpp-python's server without --embedding answers 500: it never will
        return ProviderError(f"{ep.url} serves no embeddings (HTTP {status}: {msg}); start the server with embeddings on (llama.cpp: --embedding)")
    if status in RETRYABLE_STATUS:
        return TransientProviderError(f"HTTP {status} from {ep.url}: {msg}", retry_after_from_headers(headers))
    if status in (401, 403):
        return ProviderError(f"authentication failed for the embedder {ep.model} at {ep.api_base}: HTTP {status}: {msg}")
    if status == 404:
        return ProviderError(
            f"the embedder {ep.model}: HTTP 404 from {ep.url}: {msg} (an unknown model, or a server without embeddings: llama.cpp needs --embedding)"
        )
    return ProviderError(f"the embeddings endpoint rejected the request for {ep.model}: HTTP {status} from {ep.url}: {msg}")


def probe(ep: EmbedEndpoint, timeout: float = 30.0, tries: int = 3) -> int:
    """One one-text request (the preflight): the vectors' dimension. A transient answer (429, 503, a
    dropped connection) is tried again, up to ``tries`` times; anything else raises ``ProviderError`` with one line."""
    import socket
    import urllib.error
    import urllib.request

    why = ep.missing_key()
    if why:
        raise ProviderError(why)
    b64 = ep.base64
    last: Exception | None = None
    for attempt in range(max(1, tries)):
        body = request_body(ep.wire_model, ["treesynth preflight"], b64)
        if attempt:
            wait = getattr(last, "retry_after", None)
            time.sleep(min(5.0, wait if wait is not None else 0.5 * 2 ** (attempt - 1)))
        req = urllib.request.Request(ep.url, data=body, headers=ep.headers(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
            return int(parse_embeddings(raw, 1, ep.url).vectors.shape[1])
        except urllib.error.HTTPError as e:
            headers = {k.lower(): v for k, v in e.headers.items()} if e.headers else None
            raw = e.read() or b""
            if b64 and rejects_base64(e.code, raw):
                b64 = False
                last = TransientProviderError("base64 refused")
                continue
            err = error_for(e.code, raw, headers, ep)
            if isinstance(err, ProviderError):
                raise err from None
            last = err
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (ConnectionRefusedError, socket.gaierror)):
                raise ProviderError(f"cannot reach the embeddings endpoint {ep.api_base}: connection refused or host unknown") from None
            if isinstance(reason, TimeoutError):
                raise ProviderError(f"the embeddings endpoint {ep.api_base} gave no answer within {timeout:g}s") from None
            last = TransientProviderError(f"connection to {ep.api_base} failed: {ep.scrub(' '.join(str(reason).split())[:200])}")
        except TimeoutError:
            raise ProviderError(f"the embeddings endpoint {ep.api_base} gave no answer within {timeout:g}s") from None
        except OSError as e:
            last = TransientProviderError(f"connection to {ep.api_base} failed: {type(e).__name__}: {ep.scrub(str(e))[:200]}")
        except TransientProviderError as e:
            last = e
    raise ProviderError(f"the embedder {ep.model} failed its one-text check at {ep.url}: {' '.join(str(last).split())[:300]}")
