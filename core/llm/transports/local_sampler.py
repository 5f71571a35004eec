"""Sampling one token of the embedded model, under a grammar, the way llama.cpp's own tools do it.

llama-cpp-python applies the grammar to all 49,152 candidates before every token: measured on 2
cores, that costs as much as the model's forward pass (7.5 ms of ~15 ms per token). llama.cpp's
``common_sampler`` samples first and asks the grammar about the one chosen token, and only when the
grammar rejects it filters all candidates and samples again. Inside a JSON string almost every token
is allowed, so the full filter runs rarely. The answer can still only be what the grammar admits.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

from ...errors import ProviderError


class TokenSampler:
    """top-k 40, top-p 0.95, min-p 0.05, temperature, seeded draw (llama-cpp-python's defaults),
    with an optional GBNF grammar checked after the draw. One per sequence; not thread-safe."""

    def __init__(self, ll: Any, vocab: Any, n_vocab: int, temperature: float, seed: int, grammar: str | None) -> None:
        self._ll = ll
        self._n_vocab = n_vocab
        self.chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if temperature <= 0:
            ll.llama_sampler_chain_add(self.chain, ll.llama_sampler_init_greedy())
        else:
            ll.llama_sampler_chain_add(self.chain, ll.llama_sampler_init_top_k(40))
            ll.llama_sampler_chain_add(self.chain, ll.llama_sampler_init_top_p(0.95, 1))
            ll.llama_sampler_chain_add(self.chain, ll.llama_sampler_init_min_p(0.05, 1))
            ll.llama_sampler_chain_add(self.chain, ll.llama_sampler_init_temp(temperature))
            ll.llama_sampler_chain_add(self.chain, ll.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        self.grammar = None
        if grammar is not None:
            self.grammar = ll.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
            if not self.grammar:
                self.close()
                raise ProviderError("the embedded model could not compile the answer's grammar")
        self._data = (ll.llama_token_data * n_vocab)()
        self._one = (ll.llama_token_data * 1)()
        self._ids: Any = None

    def _candidates(self, logits: Any) -> Any:
        """All candidates with the logits of one output row (a float pointer into the context)."""
        import numpy as np

        view = np.ctypeslib.as_array(self._data).view(np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
        if self._ids is None:
            self._ids = np.arange(self._n_vocab, dtype=np.int32)
        view["id"] = self._ids  # every time: the samplers sort the array in place
        view["logit"] = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        view["p"] = 0.0
        return self._ll.llama_token_data_array(data=self._data, size=self._n_vocab, selected=-1, sorted=False)

    def _draw(self, cur: Any) -> int:
        self._ll.llama_sampler_apply(self.chain, ctypes.byref(cur))
        if cur.selected < 0:
            raise ProviderError("the embedded model's sampler selected no token")
        return int(cur.data[cur.selected].id)

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from output row ``index`` of the last decode; the grammar's state advances."""
        ll = self._ll
        logits = ll.llama_get_logits_ith(ctx, index)
        token = self._draw(self._candidates(logits))
        if self.grammar is not None:
            self._one[0].id, self._one[0].logit, self._one[0].p = token, 1.0, 0.0
            single = ll.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
            ll.llama_sampler_apply(self.grammar, ctypes.byref(single))
            if single.data[0].logit == -math.inf:  # rejected: filter every candidate, then draw again
                cur = self._candidates(logits)
                ll.llama_sampler_apply(self.grammar, ctypes.byref(cur))
                token = self._draw(cur)
            ll.llama_sampler_accept(self.grammar, token)
        ll.llama_sampler_accept(self.chain, token)
        return token

    def close(self) -> None:
        if self.chain:
            self._ll.llama_sampler_free(self.chain)
            self.chain = None
        if self.grammar:
            self._ll.llama_sampler_free(self.grammar)
            self.grammar = None

    def __del__(self) -> None:
        self.close()
