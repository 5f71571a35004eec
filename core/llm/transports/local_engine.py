"""The embedded model's decoder: several calls at once in one llama.cpp context.

One worker thread owns the llama.cpp context (contexts are not thread-safe); callers hand it
requests and wait. Up to ``slots`` sequences decode together, one token each per forward pass
(measured on 2 cores: 4 sequences decode 1.45x, 8 sequences 1.6x the tokens per second of one), and
each sequence draws its token with the grammar checked after the draw (``local_sampler``). A new
request reuses the cached prefix it shares with any earlier or running call (``local_slots``), so the
task, instructions and examples that open every prompt are evaluated once, not once per call.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ...errors import ProviderError
from .local_sampler import TokenSampler
from .local_slots import cells_needed, place

_PREFILL_CHUNK = 512
_log_callback: Any = None  # kept referenced: llama.cpp calls it from C
_log = logging.getLogger("treesynth.embedded")


def _quiet_llama_log(ll: Any) -> None:
    """llama.cpp logs every step of loading to stderr; pass on its errors only (to the logging module)."""
    global _log_callback
    if _log_callback is not None:
        return

    @ll.llama_log_callback
    def _cb(level: int, text: bytes, user_data: Any) -> None:
        if level == 4:  # GGML_LOG_LEVEL_ERROR (ggml.h: none 0, debug 1, info 2, warn 3, error 4, cont 5)
            _log.error("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

    _log_callback = _cb
    ll.llama_log_set(_cb, ctypes.c_void_p(0))


@dataclass
class _Request:
    prompt: list[int]
    max_tokens: int
    temperature: float
    seed: int
    grammar: str | None
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    error: BaseException | None = None


@dataclass
class _Running:
    req: _Request
    sampler: TokenSampler
    pos: int  # position of the next token to evaluate
    last: int  # the token sampled last, evaluated in the next pass
    out: list[int] = field(default_factory=list)
    reserved: int = 0  # cells this sequence may still take


class BatchedDecoder:
    """Decodes requests concurrently in ``slots`` sequences of one context of ``n_ctx`` cells."""

    def __init__(self, model_path: str, *, slots: int, n_ctx: int, threads: int) -> None:
        import llama_cpp as ll

        _quiet_llama_log(ll)
        self._ll = ll
        ll.llama_backend_init()
        mp = ll.llama_model_default_params()
        self.model = ll.llama_model_load_from_file(model_path.encode("utf-8"), mp)
        if not self.model:
            raise ProviderError(f"llama.cpp could not load the embedded model from {model_path}")
        cp = ll.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = cp.n_ubatch = _PREFILL_CHUNK
        cp.n_seq_max = slots
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified = True  # every sequence may use any cell; a shared prefix is held once
        self.ctx = ll.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise ProviderError("llama.cpp could not create a context for the embedded model")
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.n_ctx = n_ctx
        self.slots = slots
        self._mem = ll.llama_get_memory(self.ctx)
        self._batch = ll.llama_batch_init(max(_PREFILL_CHUNK, slots), 0, slots)
        self._history: list[list[int]] = [[] for _ in range(slots)]  # what each slot's cache holds
        self._running: dict[int, _Running] = {}
        self._pending: collections.deque[_Request] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.stats = {"passes": 0, "tokens": 0, "prefill": 0, "reused": 0}
        self._thread = threading.Thread(target=self._loop, name="treesynth-embedded-decoder", daemon=True)
        self._thread.start()

    # -- callers' side ---------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        ll = self._ll
        data = text.encode("utf-8")
        n = len(data) + 8
        buf = (ll.llama_token * n)()
        k = ll.llama_tokenize(self.vocab, data, len(data), buf, n, add_bos, True)
        if k < 0:
            buf = (ll.llama_token * -k)()
            k = ll.llama_tokenize(self.vocab, data, len(data), buf, -k, add_bos, True)
        return list(buf[:k])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._ll.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
        return bytes(buf.raw[: max(0, n)])

    def meta(self, key: str) -> str | None:
        """A string from the GGUF file's metadata (the chat template, ...)."""
        size = 1 << 16
        buf = ctypes.create_string_buffer(size)
        n = self._ll.llama_model_meta_val_str(self.model, key.encode("utf-8"), buf, size)
        if n < 0:
            return None
        if n >= size:
            buf = ctypes.create_string_buffer(n + 1)
            self._ll.llama_model_meta_val_str(self.model, key.encode("utf-8"), buf, n + 1)
        return buf.value.decode("utf-8", "replace")

    def special(self, which: str) -> int:
        return int(getattr(self._ll, f"llama_vocab_{which}")(self.vocab))

    def generate(self, prompt: list[int], *, max_tokens: int, temperature: float, seed: int, grammar: str | None) -> dict[str, Any]:
        """Decode one answer (blocks until done): {"text", "finish_reason", "prompt_tokens", "completion_tokens"}."""
        if len(prompt) + max_tokens > self.n_ctx:
            raise ProviderError(f"the prompt ({len(prompt)} tokens) and answer do not fit the embedded model's context ({self.n_ctx})")
        req = _Request(prompt, max_tokens, temperature, seed, grammar)
        with self._cond:
            if self._closed:
                raise ProviderError("the embedded model was closed")
            self._pending.append(req)
            self._cond.notify()
        req.done.wait()
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    # -- the worker ------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._pending and not self._running:
                    self._cond.wait()
                if self._closed:
                    self._fail_all(ProviderError("the embedded model was closed"))
                    return
            try:
                self._admit()
                if self._running:
                    self._step()
            except BaseException as e:  # noqa: BLE001 - a decoder failure fails its calls, never hangs them
                self._fail_all(e if isinstance(e, ProviderError) else ProviderError(f"the embedded model failed: {type(e).__name__}: {e}"))

    def _fail_all(self, err: BaseException) -> None:
        with self._cond:
            reqs = [r.req for r in self._running.values()] + list(self._pending)
            self._pending.clear()
        for s, run in list(self._running.items()):
            run.sampler.close()
            self._forget(s)
        self._running.clear()
        for r in reqs:
            r.error = err
            r.done.set()

    def _forget(self, slot: int) -> None:
        self._ll.llama_memory_seq_rm(self._mem, slot, -1, -1)
        self._history[slot] = []

    def _cells_in_use(self) -> int:
        # an upper bound: cells a copied prefix shares are counted once per slot
        return sum(len(h) for h in self._history) + sum(r.reserved for r in self._running.values())

    def _admit(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    return
                free = [s for s in range(self.slots) if s not in self._running]
                req = self._pending[0]
                p = place(req.prompt, free, self._history)
                if p is None:
                    return
                need = cells_needed(len(req.prompt), p.reuse, req.max_tokens)
                if self._cells_in_use() + need > self.n_ctx:
                    # make room: drop idle slots' caches (not the one this request reuses)
                    for s in free:
                        if s != p.source and self._history[s]:
                            self._forget(s)
                    p = place(req.prompt, free, self._history) or p
                    need = cells_needed(len(req.prompt), p.reuse, req.max_tokens)
                    if self._cells_in_use() + need > self.n_ctx and self._running:
                        return  # wait for a running call to finish
                self._pending.popleft()
            try:
                self._start(req, p.slot, p.source, p.reuse)
            except BaseException as e:  # noqa: BLE001 - this request fails alone
                self._forget(p.slot)
                req.error = e if isinstance(e, ProviderError) else ProviderError(f"the embedded model failed: {type(e).__name__}: {e}")
                req.done.set()

    def _start(self, req: _Request, slot: int, source: int, reuse: int) -> None:
        ll = self._ll
        if source != slot:
            ll.llama_memory_seq_rm(self._mem, slot, -1, -1)
            ll.llama_memory_seq_cp(self._mem, source, slot, 0, reuse)
        else:
            ll.llama_memory_seq_rm(self._mem, slot, reuse, -1)
        self._history[slot] = list(req.prompt[:reuse])
        sampler = TokenSampler(ll, self.vocab, self.n_vocab, req.temperature, req.seed, req.grammar)
        todo = req.prompt[reuse:]
        pos = reuse
        b = self._batch
        last = 0
        for i in range(0, len(todo), _PREFILL_CHUNK):
            chunk = todo[i : i + _PREFILL_CHUNK]
            b.n_tokens = len(chunk)
            for j, t in enumerate(chunk):
                b.token[j] = t
                b.pos[j] = pos + j
                b.n_seq_id[j] = 1
                b.seq_id[j][0] = slot
                b.logits[j] = False
            b.logits[len(chunk) - 1] = i + _PREFILL_CHUNK >= len(todo)
            if ll.llama_decode(self.ctx, b) != 0:
                sampler.close()
                raise ProviderError("the embedded model's context is full")
            pos += len(chunk)
            last = len(chunk)
            self._history[slot].extend(chunk)
        self.stats["prefill"] += len(todo)
        self.stats["reused"] += reuse
        first = sampler.sample(self.ctx, last - 1)
        run = _Running(req, sampler, pos, first, reserved=req.max_tokens)
        self._running[slot] = run
        self._accept(slot, run, first)

    def _accept(self, slot: int, run: _Running, token: int) -> None:
        """Record a sampled token; finish the sequence at end of generation or its token limit."""
        ll = self._ll
        eog = ll.llama_vocab_is_eog(self.vocab, token)
        if not eog:
            run.out.append(token)
            run.last = token
        if eog or len(run.out) >= run.req.max_tokens:
            text = b"".join(self.piece(t) for t in run.out).decode("utf-8", errors="replace")
            run.req.result = {
                "text": text, "finish_reason": "stop" if eog else "length",
                "prompt_tokens": len(run.req.prompt), "completion_tokens": len(run.out) + (1 if eog else 0),
            }
            run.sampler.close()
            del self._running[slot]
            run.req.done.set()

    def _step(self) -> None:
        """One forward pass: the last token of every running sequence, then one draw each."""
        ll = self._ll
        b = self._batch
        order = list(self._running.items())
        b.n_tokens = len(order)
        for j, (slot, run) in enumerate(order):
            b.token[j] = run.last
            b.pos[j] = run.pos
            b.n_seq_id[j] = 1
            b.seq_id[j][0] = slot
            b.logits[j] = True
        rc = ll.llama_decode(self.ctx, b)
        if rc != 0:
            raise ProviderError(f"the embedded model's decode failed (llama_decode returned {rc})")
        self.stats["passes"] += 1
        self.stats["tokens"] += len(order)
        for j, (slot, run) in enumerate(order):
            run.pos += 1
            run.reserved -= 1
            self._history[slot].append(run.last)
            self._accept(slot, run, run.sampler.sample(self.ctx, j))
