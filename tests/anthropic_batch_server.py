"""A fake Anthropic Messages + Message Batches server on loopback, for tests (issue 15).

It implements the documented routes a batch client uses, with the documented objects:

- ``POST /v1/messages`` (interactive calls: a run's tree steps, answered by the same ``answer``);
- ``POST /v1/messages/batches`` (``{"requests": [{"custom_id", "params"}]}``),
  ``GET /v1/messages/batches/{id}``, ``GET /v1/messages/batches`` (``limit``, ``after_id``,
  ``before_id``; newest first), ``POST /v1/messages/batches/{id}/cancel``,
  ``GET /v1/messages/batches/{id}/results`` (JSONL), ``DELETE /v1/messages/batches/{id}``;

authenticated by ``x-api-key`` or a bearer token and requiring ``anthropic-version``. A ``message_batch`` has its
``processing_status`` (``in_progress`` -> ``canceling`` -> ``ended``), ``request_counts`` and, once
ended, ``results_url``; each result line is ``{"custom_id", "result": {"type": "succeeded", "message"}
| {"type": "errored", "error"} | {"type": "canceled"} | {"type": "expired"}}``.
``tests/test_anthropic_batch.py`` drives it with the official ``anthropic`` SDK: if the SDK cannot use
it, the fake is wrong.

Knobs like the OpenAI fake's: ``fail_ids`` (custom ids answered ``errored``), ``expire_after`` (the
batch's time runs out after that many requests: the rest are ``expired``), ``hold`` (batches stay
``in_progress`` until released); ``submitted`` counts every request ever given per custom id.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

# (the Messages API request) -> (HTTP status, a Message or an error body)
Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def text_of(content: Any) -> str:
    """A message's content as text (a string, or a list of text blocks)."""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or [] if isinstance(b, dict))


def message(params: dict[str, Any], answer: Any, tokens_in: int = 10, tokens_out: int = 5) -> dict[str, Any]:
    """A Message answering ``params`` with ``answer``: through the forced tool when the request has one,
    as JSON text when it asks for ``output_format``, else as text."""
    tools = params.get("tools") or []
    choice = params.get("tool_choice") or {}
    if tools and choice.get("type") == "tool":
        content = [{"type": "tool_use", "id": "toolu_fake", "name": choice["name"], "input": answer}]
        stop = "tool_use"
    else:
        content = [{"type": "text", "text": answer if isinstance(answer, str) else json.dumps(answer)}]
        stop = "end_turn"
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": params.get("model", "claude"), "content": content,
            "stop_reason": stop, "stop_sequence": None, "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out}}


def echo_answer(params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    last = text_of((params.get("messages") or [{}])[-1].get("content"))
    return 200, message(params, {"echo": f"answer to: {last}"} if params.get("tools") else f"answer to: {last}")


def _err(status: int, etype: str, msg: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": etype, "message": msg}}, status=status)


class FakeAnthropicServer:
    def __init__(self, answer: Answer = echo_answer, *, per_request_s: float = 0.0, api_key: str | None = None) -> None:
        self.answer = answer
        self.per_request_s = per_request_s
        self.api_key = api_key
        self.batches: dict[str, dict[str, Any]] = {}
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.submitted: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.interactive = 0
        self.fail_ids: set[str] = set()
        self.expire_after: int | None = None
        self.hold = threading.Event()
        self.hold.set()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeAnthropicServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            app = web.Application(client_max_size=512 * 1024 * 1024, middlewares=[self._auth])
            app.add_routes([
                web.post("/v1/messages", self._messages),
                web.post("/v1/messages/batches", self._create), web.get("/v1/messages/batches", self._list),
                web.get("/v1/messages/batches/{id}", self._retrieve), web.delete("/v1/messages/batches/{id}", self._delete),
                web.post("/v1/messages/batches/{id}/cancel", self._cancel),
                web.get("/v1/messages/batches/{id}/results", self._results),
            ])
            runner = web.AppRunner(app)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-anthropic-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self.hold.set()
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
        self.calls[f"{request.method} {route}"] += 1
        # the key as x-api-key (litellm, our client: anthropic-version 2023-06-01) or a bearer token (the SDK since 2.x)
        if self.api_key is not None and self.api_key not in (request.headers.get("x-api-key"), request.headers.get("authorization", "")[7:]):
            return _err(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _err(400, "invalid_request_error", "anthropic-version: header is required")
        return await handler(request)

    # -- interactive ---------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.interactive += 1
        status, out = self.answer(body)
        return web.json_response(out, status=status)

    # -- batches -------------------------------------------------------------------------------

    def _view(self, b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if not k.startswith("_")}

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _err(400, "invalid_request_error", "the body is not JSON")
        reqs = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(reqs, list) or not reqs:
            return _err(400, "invalid_request_error", "requests: Field required")
        seen: set[str] = set()
        for i, r in enumerate(reqs):
            cid = r.get("custom_id") if isinstance(r, dict) else None
            p = r.get("params") if isinstance(r, dict) else None
            if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
                return _err(400, "invalid_request_error", f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
            if cid in seen:
                return _err(400, "invalid_request_error", f"Duplicate custom_id: {cid}")
            seen.add(cid)
            if not isinstance(p, dict) or not isinstance(p.get("model"), str) or not isinstance(p.get("max_tokens"), int) \
                    or not isinstance(p.get("messages"), list) or not p["messages"]:
                return _err(400, "invalid_request_error", f"requests.{i}.params: model, max_tokens and messages are required")
            t = p.get("temperature")
            if t is not None and not 0.0 <= float(t) <= 1.0:
                return _err(400, "invalid_request_error", f"requests.{i}.params.temperature: must be between 0 and 1")
        now = time.time()
        bid = f"msgbatch_{next(self._ids):06d}"
        b = {
            "id": bid, "type": "message_batch", "processing_status": "in_progress",
            "request_counts": {"processing": len(reqs), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
            "ended_at": None, "created_at": iso(now), "expires_at": iso(now + 86400), "archived_at": None,
            "cancel_initiated_at": None, "results_url": None, "_requests": reqs,
        }
        for cid in seen:
            self.submitted[cid] += 1
        self.batches[bid] = b
        self.results[bid] = []
        asyncio.get_running_loop().create_task(self._process(b))
        return web.json_response(self._view(b))

    async def _retrieve(self, request: web.Request) -> web.Response:
        b = self.batches.get(request.match_info["id"])
        return web.json_response(self._view(b)) if b else _err(404, "not_found_error", "batch not found")

    async def _list(self, request: web.Request) -> web.Response:
        items = sorted(self.batches.values(), key=lambda b: b["id"], reverse=True)  # newest first
        after, before = request.query.get("after_id"), request.query.get("before_id")
        if after:
            items = [b for b in items if b["id"] < after]
        if before:
            items = [b for b in items if b["id"] > before]
        limit = int(request.query.get("limit", "20"))
        page = [self._view(b) for b in items[:limit]]
        return web.json_response({"data": page, "has_more": len(items) > limit, "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None})

    async def _cancel(self, request: web.Request) -> web.Response:
        b = self.batches.get(request.match_info["id"])
        if b is None:
            return _err(404, "not_found_error", "batch not found")
        if b["processing_status"] == "in_progress":
            b["processing_status"], b["cancel_initiated_at"] = "canceling", iso(time.time())
        return web.json_response(self._view(b))

    async def _results(self, request: web.Request) -> web.Response:
        bid = request.match_info["id"]
        b = self.batches.get(bid)
        if b is None:
            return _err(404, "not_found_error", "batch not found")
        if b["processing_status"] != "ended":
            return _err(400, "invalid_request_error", "Results are not available until processing has ended")
        body = b"".join(json.dumps(x).encode() + b"\n" for x in self.results[bid])
        return web.Response(body=body, content_type="application/binary")

    async def _delete(self, request: web.Request) -> web.Response:
        bid = request.match_info["id"]
        b = self.batches.get(bid)
        if b is None:
            return _err(404, "not_found_error", "batch not found")
        if b["processing_status"] != "ended":
            return _err(400, "invalid_request_error", "a batch must end before it is deleted")
        del self.batches[bid]
        return web.json_response({"id": bid, "type": "message_batch_deleted"})

    async def _process(self, b: dict[str, Any]) -> None:
        counts, out = b["request_counts"], self.results[b["id"]]
        done = 0
        for r in b["_requests"]:
            while not self.hold.is_set() and b["processing_status"] == "in_progress":
                await asyncio.sleep(0.01)
            cid = r["custom_id"]
            if b["processing_status"] == "canceling":
                result: dict[str, Any] = {"type": "canceled"}
            elif self.expire_after is not None and done >= self.expire_after:
                result = {"type": "expired"}
            else:
                if self.per_request_s:
                    await asyncio.sleep(self.per_request_s)
                if cid in self.fail_ids:
                    status, msg = 400, {"type": "error", "error": {"type": "invalid_request_error", "message": "scripted failure"}}
                else:
                    try:
                        status, msg = self.answer(r["params"])
                    except Exception as e:  # a bug in the test's answer: an api_error, never a hung batch
                        status, msg = 500, {"type": "error", "error": {"type": "api_error", "message": f"{type(e).__name__}: {e}"}}
                result = {"type": "succeeded", "message": msg} if status == 200 else {"type": "errored", "error": msg}
                done += 1
            kind = result["type"]
            counts["processing"] -= 1
            counts[kind] += 1
            out.append({"custom_id": cid, "result": result})
        now = time.time()
        b["processing_status"], b["ended_at"] = "ended", iso(now)
        b["results_url"] = f"{self.root}/v1/messages/batches/{b['id']}/results"
