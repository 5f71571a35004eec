"""A fake OpenAI Files + Batches server on loopback, for tests (issue 15).

It implements the documented routes a batch client uses:

- ``POST /v1/files`` (multipart: ``file``, ``purpose``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``;
- ``POST /v1/chat/completions`` (interactive calls, answered by the same ``answer``);
- ``POST /v1/batches`` (``input_file_id``, ``endpoint``, ``completion_window``, ``metadata``),
  ``GET /v1/batches/{id}``, ``GET /v1/batches`` (``limit``, ``after``), ``POST /v1/batches/{id}/cancel``;

with the documented objects (``file``, ``batch`` with its status timeline and ``request_counts``)
and output/error files of ``{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error"}`` lines. ``tests/test_batch_api.py`` drives it with the official ``openai`` SDK: if the SDK
cannot use it, the fake is wrong.

Each batch is validated, then its requests are answered by ``answer(body) -> (status, body)`` one
by one while the batch is ``in_progress`` (``per_request_s`` apart), then it is finalised. The server
counts every request it was ever given per ``custom_id`` (``submitted``), so a test can prove that
nothing was submitted twice. Knobs: ``fail_ids`` (custom ids answered with an error status),
``expire_after`` (a batch expires after answering that many requests; the rest are reported with
``batch_expired``), ``hold`` (batches stay ``in_progress`` until released), ``fail_validation``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def echo_answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A chat completion whose content names the request's last message."""
    last = body.get("messages", [{}])[-1].get("content", "")
    return 200, {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer to: {last}"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


class FakeBatchServer:
    def __init__(self, answer: Answer = echo_answer, *, validate_s: float = 0.02, per_request_s: float = 0.0,
                 finalize_s: float = 0.02, api_key: str | None = None) -> None:
        self.answer = answer
        self.validate_s, self.per_request_s, self.finalize_s = validate_s, per_request_s, finalize_s
        self.api_key = api_key
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.submitted: collections.Counter[str] = collections.Counter()  # custom_id -> times given in a batch
        self.calls: collections.Counter[str] = collections.Counter()  # route -> calls (polls included)
        self.interactive = 0  # chat completions answered directly (not in a batch)
        self.fail_ids: set[str] = set()
        self.expire_after: int | None = None
        self.fail_validation = False
        self.hold = threading.Event()
        self.hold.set()  # cleared: batches wait in_progress until set again
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeBatchServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            app = web.Application(client_max_size=512 * 1024 * 1024, middlewares=[self._auth])
            app.add_routes([
                web.post("/v1/files", self._upload), web.get("/v1/files/{id}", self._file),
                web.get("/v1/files/{id}/content", self._content), web.delete("/v1/files/{id}", self._delete_file),
                web.post("/v1/chat/completions", self._chat),
                web.post("/v1/batches", self._create), web.get("/v1/batches", self._list),
                web.get("/v1/batches/{id}", self._retrieve), web.post("/v1/batches/{id}/cancel", self._cancel),
            ])
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-batch-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self.hold.set()
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeBatchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers -------------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    @staticmethod
    def _error(status: int, message: str, code: str | None = None, param: str | None = None) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}, status=status)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        self.calls[f"{request.method} {request.match_info.route.resource.canonical if request.match_info.route.resource else request.path}"] += 1
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(401, "Incorrect API key provided", "invalid_api_key")
        return await handler(request)

    def _new_file(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = self._id("file")
        f = {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()), "filename": filename,
             "purpose": purpose, "status": "processed", "expires_at": None, "status_details": None}
        self.files[fid] = f
        self.contents[fid] = content
        return f

    # -- interactive calls (a run's tree steps) --------------------------------------------------

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.interactive += 1
        status, out = self.answer(body)
        return web.json_response(out, status=status)

    # -- files ---------------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        purpose = form.get("purpose")
        upload = form.get("file")
        if purpose not in ("batch", "batch_output", "fine-tune", "assistants", "user_data", "evals", "vision"):
            return self._error(400, f"Invalid purpose: {purpose!r}", param="purpose")
        if not isinstance(upload, web.FileField):
            return self._error(400, "'file' is a required multipart field", param="file")
        content = upload.file.read()
        return web.json_response(self._new_file(content, upload.filename or "upload.jsonl", str(purpose)))

    async def _file(self, request: web.Request) -> web.Response:
        f = self.files.get(request.match_info["id"])
        return web.json_response(f) if f else self._error(404, "No such File object", param="id")

    async def _content(self, request: web.Request) -> web.Response:
        fid = request.match_info["id"]
        if fid not in self.contents:
            return self._error(404, "No such File object", param="id")
        return web.Response(body=self.contents[fid], content_type="application/octet-stream")

    async def _delete_file(self, request: web.Request) -> web.Response:
        fid = request.match_info["id"]
        if self.files.pop(fid, None) is None:
            return self._error(404, "No such File object", param="id")
        self.contents.pop(fid, None)
        return web.json_response({"id": fid, "object": "file", "deleted": True})

    # -- batches -------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self._error(400, "the body is not JSON")
        fid = body.get("input_file_id")
        if fid not in self.contents:
            return self._error(400, f"Invalid 'input_file_id': {fid!r}", param="input_file_id")
        if body.get("endpoint") not in ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/completions"):
            return self._error(400, f"Invalid 'endpoint': {body.get('endpoint')!r}", param="endpoint")
        if body.get("completion_window") != "24h":
            return self._error(400, "completion_window must be '24h'", param="completion_window")
        now = int(time.time())
        bid = self._id("batch")
        b = {
            "id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None, "input_file_id": fid,
            "completion_window": "24h", "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": now, "in_progress_at": None, "expires_at": now + 86400, "finalizing_at": None, "completed_at": None,
            "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata"),
        }
        self.batches[bid] = b
        asyncio.get_running_loop().create_task(self._process(b))
        return web.json_response(b)

    async def _retrieve(self, request: web.Request) -> web.Response:
        b = self.batches.get(request.match_info["id"])
        return web.json_response(b) if b else self._error(404, "No such Batch object", param="id")

    async def _list(self, request: web.Request) -> web.Response:
        items = sorted(self.batches.values(), key=lambda b: b["id"], reverse=True)
        after = request.query.get("after")
        if after:
            items = [b for b in items if b["id"] < after]
        limit = int(request.query.get("limit", "20"))
        page = items[:limit]
        return web.json_response({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit})

    async def _cancel(self, request: web.Request) -> web.Response:
        b = self.batches.get(request.match_info["id"])
        if b is None:
            return self._error(404, "No such Batch object", param="id")
        if b["status"] in ("validating", "in_progress"):
            b["status"], b["cancelling_at"] = "cancelling", int(time.time())
        elif b["status"] not in ("cancelling", "cancelled"):
            return self._error(409, f"Cannot cancel a batch with status {b['status']}")
        return web.json_response(b)

    async def _process(self, b: dict[str, Any]) -> None:
        try:
            await self._run_batch(b)
        except Exception as e:  # a bug in the fake or its answer function: say so, never leave a batch hanging
            import traceback

            traceback.print_exc()
            b["status"], b["failed_at"] = "failed", int(time.time())
            b["errors"] = {"object": "list", "data": [{"code": "fake_server_error", "message": f"{type(e).__name__}: {e}", "param": None, "line": None}]}

    async def _run_batch(self, b: dict[str, Any]) -> None:
        await asyncio.sleep(self.validate_s)
        lines = [ln for ln in self.contents[b["input_file_id"]].splitlines() if ln.strip()]
        reqs: list[dict[str, Any]] = []
        problem = None
        for i, ln in enumerate(lines, 1):
            try:
                r = json.loads(ln)
            except json.JSONDecodeError:
                problem = f"line {i} is not JSON"
                break
            if not isinstance(r, dict) or not {"custom_id", "method", "url", "body"} <= set(r) or r["url"] != b["endpoint"]:
                problem = f"line {i}: each line needs custom_id, method, url (the batch's endpoint) and body"
                break
            reqs.append(r)
        ids = [r["custom_id"] for r in reqs]
        if problem is None and len(set(ids)) != len(ids):
            problem = "custom_id values must be unique within a batch"
        if self.fail_validation or problem is not None or not reqs:
            b["status"], b["failed_at"] = "failed", int(time.time())
            b["errors"] = {"object": "list", "data": [{"code": "invalid_request", "message": problem or "the batch was rejected", "param": None, "line": None}]}
            return
        for cid in ids:
            self.submitted[cid] += 1
        b["status"], b["in_progress_at"] = "in_progress", int(time.time())
        b["request_counts"]["total"] = len(reqs)
        out, err = [], []
        done = 0
        for r in reqs:
            while not self.hold.is_set() and b["status"] == "in_progress":
                await asyncio.sleep(0.01)
            if b["status"] == "cancelling":
                break
            if self.expire_after is not None and done >= self.expire_after:
                b["status"] = "expiring"
                break
            if self.per_request_s:
                await asyncio.sleep(self.per_request_s)
            status, body = (400, {"error": {"message": "scripted failure", "type": "invalid_request_error", "param": None, "code": None}}) \
                if r["custom_id"] in self.fail_ids else self.answer(r["body"])
            line = {"id": self._id("batch_req"), "custom_id": r["custom_id"],
                    "response": {"status_code": status, "request_id": self._id("req"), "body": body}, "error": None}
            (out if status == 200 else err).append(line)
            b["request_counts"]["completed" if status == 200 else "failed"] += 1
            done += 1
        answered = {x["custom_id"] for x in out + err}
        if b["status"] in ("cancelling", "expiring"):
            code = "batch_cancelled" if b["status"] == "cancelling" else "batch_expired"
            for r in reqs:
                if r["custom_id"] not in answered:
                    err.append({"id": self._id("batch_req"), "custom_id": r["custom_id"], "response": None,
                                "error": {"code": code, "message": f"This request could not be executed before the batch was {code[6:]}."}})
                    b["request_counts"]["failed"] += 1
        final = {"cancelling": "cancelled", "expiring": "expired"}.get(b["status"], "completed")
        if final == "completed":
            b["status"], b["finalizing_at"] = "finalizing", int(time.time())
            await asyncio.sleep(self.finalize_s)
        if out:
            b["output_file_id"] = self._new_file(b"".join(json.dumps(x).encode() + b"\n" for x in out), f"{b['id']}_output.jsonl", "batch_output")["id"]
        if err:
            b["error_file_id"] = self._new_file(b"".join(json.dumps(x).encode() + b"\n" for x in err), f"{b['id']}_error.jsonl", "batch_output")["id"]
        b["status"] = final
        b[f"{final}_at"] = int(time.time())
