"""Transports: the one place a call leaves the process (each implements ``Transport``, core/llm/types.py).

    openai_http.py  the native OpenAI-compatible client (aiohttp) for openai/ and hosted_vllm/ models
    litellm.py      any provider litellm knows, a litellm Router, and the embedded model through litellm
    local.py        the embedded model (llama.cpp in-process), registered with litellm as ``local/``
    ray.py          ``--executor ray``: calls run on Ray actors, each holding one of the transports above
    common.py       what they share: Retry-After, one-line messages, the open-files limit

Which one a run gets: core/transport_choice.py decides, core/llm/select.py and lifecycle.py build it
(``make_local_transport``, ``make_transport``); closing one: ``close_transport`` (lifecycle.py).
"""
