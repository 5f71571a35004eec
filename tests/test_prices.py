"""Prices for any model, and a budget that holds: ``prices`` / ``--price-in`` / ``--price-out`` (core/config.py),
the one lookup where given prices win (core/llm/pricing.py ``call_price``), the budget's reservations
(core/llm/budget.py: their arithmetic as plain functions, the client's gate, the endpoint embedder), and the
preflight that refuses a budget without a price (core/preflight.py); end to end through the CLI against
tests/faultserver.py (the native transport; litellm's in the slow run)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env
from tests.faultserver import FaultConfig, FaultServer, check_run
from treesynth.core.config import build_config, resume_overrides
from treesynth.core.errors import BudgetExhausted, ConfigError
from treesynth.core.llm import Completion, LLMClient, LLMRequest, UsageTotals
from treesynth.core.llm.budget import GO, SPENT, WAIT, Reservations, budget_state, call_ceiling, prompt_tokens, reservation_price
from treesynth.core.llm.pricing import batch_call_price, call_price, given_price
from treesynth.core.preflight import check_prices, priced_models

TASK = "GSM8K-style math word problems"
SMALL = ["--fields", "question,answer", "--depth", "2", "--pivots", "4", "--samples-per-call", "3"]
UNKNOWN = "openai/fault-model"  # not in litellm's table
KNOWN = "openai/gpt-4o-mini"


def one_line(e: BaseException) -> str:
    s = str(e)
    assert s and "\n" not in s, repr(s)
    return s


def _cfg(**kw):
    return build_config(flags={"task": "t", **kw})


def _run(srv: FaultServer, out: Path, *extra: str, model: str = UNKNOWN, transport: str = "http") -> list[str]:
    return ["run", TASK, "--no-ui", "--json-events", "--model", model, "--api-base", srv.url, "--out", str(out), "--transport", transport,
            *SMALL, *extra]


def _finished(stdout: str) -> dict:
    fin = json.loads(stdout.splitlines()[-1])
    assert fin["event"] == "run_finished", fin
    return fin


# ---- the config --------------------------------------------------------------------------------


def test_price_flags_are_the_models_entry_in_prices():
    cfg = _cfg(model=UNKNOWN, price_in=1000, price_out=2000, prices={"openai/judge": {"input": 1, "output": 2}})
    assert {m: (p.input, p.output) for m, p in cfg.prices.items()} == {UNKNOWN: (1000.0, 2000.0), "openai/judge": (1.0, 2.0)}
    assert cfg.redacted()["prices"] == {UNKNOWN: {"input": 1000.0, "output": 2000.0}, "openai/judge": {"input": 1.0, "output": 2.0}}
    assert build_config(base=cfg.redacted()).prices == cfg.prices  # a resumed run keeps them
    assert _cfg(model=KNOWN, price_in=0, price_out=0).prices[KNOWN].input == 0.0  # free: a server of one's own
    assert _cfg().prices == {}


@pytest.mark.parametrize(
    "flags, words",
    [
        ({"price_in": 1}, "--price-in and --price-out go together"),
        ({"price_out": 1}, "--price-in and --price-out go together"),
        ({"price_in": -1, "price_out": 1}, "non-negative finite numbers"),
        ({"price_in": float("nan"), "price_out": 1}, "non-negative finite numbers"),
        ({"price_in": float("inf"), "price_out": 1}, "non-negative finite numbers"),
        ({"price_in": "cheap", "price_out": 1}, "non-negative finite numbers"),
        ({"price_in": True, "price_out": 1}, "non-negative finite numbers"),
        ({"prices": {"m": {"input": 1}}}, "prices: m: give input and output"),
        ({"prices": {"m": {"input": 1, "output": 2, "cached": 0}}}, "prices: m: give input and output"),
        ({"prices": {"m": {"input": -0.5, "output": 2}}}, "prices: m: give input and output"),
        ({"prices": {"m": {"input": 10**400, "output": 2}}}, "prices: m: give input and output"),
        ({"prices": {"m": 3}}, "prices: m:"),
        ({"prices": [1, 2]}, "prices: must map model names to prices"),
        ({"prices": {"": {"input": 1, "output": 1}}}, "is not a model name"),
    ],
)
def test_bad_prices_are_one_line(flags, words):
    with pytest.raises(ConfigError) as e:
        _cfg(**flags)
    assert words in one_line(e.value)


def test_prices_in_a_config_file_and_on_resume(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("task: t\nmodel: openai/x\nprices:\n  openai/x: {input: 0.5, output: 1.5}\n  openai/text-embedding-3-small: {input: 0.02, output: 0}\n")
    cfg = build_config(config_file=p)
    assert cfg.prices["openai/x"].output == 1.5 and cfg.prices["openai/text-embedding-3-small"].input == 0.02
    # flags beat the file: --price-in/--price-out replace the model's entry
    assert build_config(config_file=p, flags={"price_in": 2, "price_out": 3}).prices["openai/x"].input == 2.0
    # a resume may give prices (a model priced anew, or a new model)
    saved = cfg.redacted()
    assert resume_overrides(saved, {"price_in": 1.0, "price_out": 2.0, "budget": 5}) == {"price_in": 1.0, "price_out": 2.0, "budget": 5}
    resumed = build_config(base=saved, flags={"model": "openai/y", "price_in": 1.0, "price_out": 2.0})
    assert set(resumed.prices) == {"openai/x", "openai/text-embedding-3-small", "openai/y"}


# ---- the one lookup: given prices win ----------------------------------------------------------


def test_given_prices_win_over_litellms_table():
    table = call_price(KNOWN)
    assert table is not None and table(1_000_000, 0) == pytest.approx(0.15)  # gpt-4o-mini: $0.15 per million in
    prices = _cfg(model=KNOWN, price_in=1000, price_out=2000).prices
    given = call_price(KNOWN, prices)
    assert given is not None and given(1_000_000, 1_000_000) == pytest.approx(3000.0)
    assert given(1000, 10, 500) == pytest.approx(1000 * 1e-3 + 10 * 2e-3)  # cached tokens at the input price
    bp = batch_call_price(KNOWN, prices)
    assert bp is not None and bp(1_000_000, 0) == pytest.approx(1000.0)  # the batch API's too
    assert call_price(UNKNOWN) is None and call_price(UNKNOWN, prices) is None
    assert given_price(UNKNOWN, _cfg(model=UNKNOWN, price_in=1, price_out=1).prices) is not None
    assert call_price("local/smollm2")(10, 10) == 0.0


def test_the_estimate_uses_the_given_price():
    from treesynth.core.estimate import estimate, estimate_lines
    from treesynth.core.progress import fmt_cost
    from treesynth.core.prompts import Prompts

    cfg = _cfg(model=KNOWN, price_in=1000, price_out=2000)
    est = estimate(cfg, Prompts(cfg))
    expected = est.tokens_in * 1e-3 + est.tokens_out * 2e-3
    assert f"cost:           ~{fmt_cost(expected)}" in estimate_lines(cfg)
    table = estimate_lines(_cfg(model=KNOWN))
    assert f"~{fmt_cost(expected)}" not in "\n".join(table)
    unknown = call_cli("estimate", "t", "--model", UNKNOWN)
    assert unknown.returncode == 0 and "give --price-in and --price-out" in unknown.stdout
    priced = call_cli("estimate", "t", "--model", UNKNOWN, "--price-in", "1000", "--price-out", "2000")
    assert priced.returncode == 0 and f"cost:           ~{fmt_cost(expected)}" in priced.stdout


def test_every_cost_of_a_run_is_at_its_given_prices():
    from treesynth.core.llm import make_local_transport
    from treesynth.core.quality.embedders import make_row_embedder
    from treesynth.core.quality.setup import judge_client

    cfg = _cfg(model=KNOWN, api_base="http://127.0.0.1:9/v1", judge=True, judge_model="openai/judge", embedder="openai/emb",
               embed_api_base="http://127.0.0.1:9/v1", budget=5, prices={KNOWN: {"input": 1, "output": 2}, "openai/judge": {"input": 3, "output": 4},
                                                                          "openai/emb": {"input": 5, "output": 0}})
    made: list = []
    client = LLMClient(make_local_transport(cfg), budget=5, price=reservation_price(cfg, cfg.model))
    jc = judge_client(cfg, client, lambda c: made.append(make_local_transport(c)) or made[-1])
    assert client.transport.price(10**6, 10**6) == pytest.approx(3.0)
    assert made[0].price(10**6, 10**6) == pytest.approx(7.0) and jc.price(10**6, 10**6) == pytest.approx(7.0)
    assert jc.usage is client.usage and jc.usage.reserved is client.usage.reserved
    e = make_row_embedder(cfg, client=client)
    assert e.price(10**6, 0) == pytest.approx(5.0)
    # a --batch run's calls wait in batches: the batch transport reserves them, the client does not
    assert reservation_price(cfg.model_copy(update={"batch": True}), cfg.model) is None
    assert reservation_price(cfg.model_copy(update={"budget": None}), cfg.model) is None


# ---- the reservation arithmetic ----------------------------------------------------------------


def test_prompt_tokens_err_high():
    assert prompt_tokens([]) == 0
    assert prompt_tokens([{"content": "abc"}]) == 1
    assert prompt_tokens([{"content": "abcd"}, {"content": "ab"}]) == 2
    assert prompt_tokens([{"content": "x" * 400}]) > 400 // 4  # above the usual 4 characters a token


# one word problem in each script, written for this test
PROBLEMS = {
    "zh": "小明有三个苹果，他又买了五个。然后他给了妹妹两个苹果。请问小明现在有多少个苹果？",
    "ja": "太郎さんはりんごを3個持っています。さらに5個買いました。妹に2個あげると、何個残りますか？",
    "ko": "철수는 사과 세 개를 가지고 있습니다. 다섯 개를 더 샀습니다. 동생에게 두 개를 주면 몇 개가 남습니까?",
    "ru": "У Маши было три яблока. Она купила ещё пять. Сколько яблок у неё теперь, если она отдала два брату?",
    "ar": "لدى أحمد ثلاث تفاحات. اشترى خمس تفاحات أخرى. كم تفاحة لديه الآن إذا أعطى أخته تفاحتين؟",
    "hi": "राम के पास तीन सेब हैं। उसने पाँच और खरीदे। अगर वह अपनी बहन को दो सेब दे दे तो उसके पास कितने सेब बचेंगे?",
    "th": "สมชายมีแอปเปิ้ลสามลูก เขาซื้อเพิ่มอีกห้าลูก ถ้าให้น้องสาวสองลูก เขาจะเหลือแอปเปิ้ลกี่ลูก",
    "el": "Η Μαρία είχε τρία μήλα. Αγόρασε άλλα πέντε. Πόσα μήλα έχει τώρα αν έδωσε δύο στον αδελφό της;",
    "de": "Die Schülerin läuft über die Straße und kauft fünf Äpfel für ihre Großmutter.",
    "en": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
}


@pytest.fixture(scope="module")
def tokenizers():
    """OpenAI's cl100k and o200k tokenizers (tiktoken), from the files litellm ships (no download)."""
    import importlib.util

    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"
    import tiktoken

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(folder))
        return [tiktoken.get_encoding("cl100k_base"), tiktoken.get_encoding("o200k_base")]


@pytest.mark.parametrize("lang", sorted(PROBLEMS))
def test_a_prompts_estimate_is_at_least_its_real_tokens_in_every_script(tokenizers, lang):
    """A reservation must not run low for a prompt in another language (characters / 3 was 3.8x low for Chinese)."""
    text = PROBLEMS[lang] * 20
    est = prompt_tokens([{"content": text}])
    for enc in tokenizers:
        assert est >= len(enc.encode(text)), (lang, enc.name)
    assert est <= 4 * max(len(enc.encode(text)) for enc in tokenizers)  # high, not absurd


def test_call_ceiling_is_the_prompt_and_max_tokens_at_the_price():
    price = given_price("m", _cfg(model="openai/m", price_in=1000, price_out=2000, prices={"m": {"input": 1000, "output": 2000}}).prices)
    assert call_ceiling(price, 100, 1500) == pytest.approx(100 * 1e-3 + 1500 * 2e-3)
    assert call_ceiling(None, 100, 1500) == 0.0
    assert call_ceiling(lambda tin, tout, cached=0: None, 100, 1500) == 0.0
    assert call_ceiling(price, -5, 0) == 0.0


@pytest.mark.parametrize(
    "budget, spent, reserved, known, state",
    [
        (None, 100.0, 100.0, True, GO),
        (10.0, 0.0, 0.0, True, GO),
        (10.0, 9.0, 0.9, True, GO),
        (10.0, 9.0, 1.0, True, WAIT),  # the rest of the budget is held by calls in flight
        (10.0, 2.0, 50.0, True, WAIT),
        (10.0, 10.0, 0.0, True, SPENT),
        (10.0, 12.0, 3.0, True, SPENT),
        (0.0, 0.0, 0.0, True, SPENT),
        (10.0, 50.0, 0.0, False, GO),  # an unknown cost cannot stop anything (the preflight refuses it)
    ],
)
def test_budget_state(budget, spent, reserved, known, state):
    assert budget_state(budget, spent, reserved, known) == state


def test_reservations_add_up_and_clear_when_nothing_is_in_flight():
    r = Reservations()
    a, b = r.hold(0.1), r.hold(0.2)
    assert r.total == pytest.approx(0.3) and r.calls == 2
    r.release(a)
    assert r.total == pytest.approx(0.2) and r.calls == 1
    r.release(b)
    assert r.total == 0.0 and r.calls == 0  # exactly: no float residue kept


async def test_waiters_wake_one_by_one_and_a_cancelled_one_hands_its_wake_up_on():
    r = Reservations()
    held = r.hold(5.0)
    ready = [False]
    order: list[str] = []

    async def waiter(name: str) -> None:
        await r.wait_for(lambda: ready[0])
        order.append(name)

    a, b, c = (asyncio.ensure_future(waiter(n)) for n in "abc")
    await asyncio.sleep(0.01)
    assert not order
    ready[0] = True
    r.release(held)  # wakes a; a is cancelled before it runs: b gets the wake-up, then c after b
    a.cancel()
    await asyncio.wait_for(asyncio.gather(b, c), 2)
    assert order == ["b", "c"] and a.cancelled()


# ---- the client's gate -------------------------------------------------------------------------


class _Slow:
    """Answers every call after ``latency`` seconds at ``cost``; counts the calls in flight."""

    model = "openai/slow"

    def __init__(self, cost: float, latency: float = 0.02) -> None:
        self.cost, self.latency = cost, latency
        self.in_flight = self.most = self.calls = 0

    async def __call__(self, req: LLMRequest) -> Completion:
        self.calls += 1
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        return Completion("{}", "stop", 10, 10, self.cost)


async def _spend(client: LLMClient, n: int) -> list:
    reqs = [LLMRequest([{"role": "user", "content": f"call {i}"}], slot=f"s{i}", max_tokens=10) for i in range(n)]
    return await asyncio.gather(*(client.complete(r) for r in reqs), return_exceptions=True)


async def test_the_budget_passes_by_one_call_at_most_with_many_in_flight():
    t = _Slow(cost=1.0)
    client = LLMClient(t, concurrency=8, budget=10.0, price=lambda tin, tout, cached=0: 3.0)  # each call's most: $3
    got = await _spend(client, 40)
    done = [g for g in got if isinstance(g, Completion)]
    assert all(isinstance(g, (Completion, BudgetExhausted)) for g in got)
    assert 10.0 <= client.usage.cost < 10.0 + 1.0  # at the budget, past it by less than one call
    assert len(done) == t.calls == 10 and client.budget_hit
    assert 1 < t.most <= 4  # at most $10 of $3 reservations at once
    assert client.usage.reserved.total == 0.0 and client.usage.reserved.calls == 0
    # without a price (no reservations) every call in flight passes the gate: 8 calls at once, 16 spent
    old = LLMClient(_Slow(cost=1.0), concurrency=8, budget=10.0)
    await _spend(old, 40)
    assert old.usage.cost == 16.0


async def test_a_budget_held_by_calls_in_flight_makes_calls_wait_not_fail():
    t = _Slow(cost=1.0)
    client = LLMClient(t, concurrency=8, budget=10.0, price=lambda tin, tout, cached=0: 100.0)  # each call's most: past the budget
    got = await _spend(client, 40)
    assert sum(isinstance(g, Completion) for g in got) == 10 and client.usage.cost == 10.0
    assert t.most == 1  # one at a time: the budget never stopped the run before it was spent


async def test_a_stop_reaches_calls_waiting_for_room():
    t = _Slow(cost=1.0, latency=0.2)
    client = LLMClient(t, concurrency=4, budget=10.0, price=lambda tin, tout, cached=0: 100.0)
    task = asyncio.ensure_future(_spend(client, 4))
    await asyncio.sleep(0.05)
    client.stop()
    got = await asyncio.wait_for(task, 5)
    assert sum(isinstance(g, Completion) for g in got) == 1 and t.calls == 1


async def test_the_endpoint_embedder_holds_its_most_while_in_flight():
    from tests.embed_server import FakeEmbeddings
    from treesynth.core.quality.embed_endpoint import EndpointRowEmbedder

    with FakeEmbeddings(latency=0.3) as srv:
        usage = UsageTotals()
        e = EndpointRowEmbedder("openai/emb-small", srv.url, usage=usage, budget=100.0, price=lambda tin, tout, cached=0: tin * 0.01)
        task = asyncio.ensure_future(e.embed(["abcdef" * 10]))
        await asyncio.sleep(0.15)
        assert usage.reserved.total == pytest.approx(20 * 0.01)  # 60 characters, 3 a token, at $0.01
        await task
        await e.aclose()
    assert usage.reserved.total == 0.0 and usage.cost == pytest.approx(usage.embed_tokens * 0.01)  # at the server's count


# ---- the preflight -----------------------------------------------------------------------------


def test_a_budget_needs_a_price_for_every_model_the_run_pays_for():
    check_prices(_cfg(model=UNKNOWN))  # no budget: nothing to enforce
    check_prices(_cfg(model=KNOWN, budget=1))
    check_prices(_cfg(model="local/smollm2", budget=1))
    with pytest.raises(ConfigError) as e:
        check_prices(_cfg(model=UNKNOWN, budget=0.01))
    assert one_line(e.value) == (
        f"--budget needs a price for {UNKNOWN}: litellm's table has none; give --price-in and --price-out (USD per million tokens) "
        "or prices: in the config"
    )
    check_prices(_cfg(model=UNKNOWN, budget=0.01, price_in=1000, price_out=1000))
    judged = {"model": KNOWN, "budget": 1, "judge": True, "judge_model": "openai/fault-judge"}
    with pytest.raises(ConfigError, match="needs a price for the judge model openai/fault-judge: .*prices: "):
        check_prices(_cfg(**judged))
    check_prices(_cfg(**judged, prices={"openai/fault-judge": {"input": 1, "output": 1}}))
    check_prices(_cfg(**{**judged, "judge": False}))  # a judge model named but not judging: no calls
    embedded = {"model": KNOWN, "budget": 1, "embedder": "hosted_vllm/my-emb", "embed_api_base": "http://127.0.0.1:9/v1"}
    with pytest.raises(ConfigError, match="needs a price for the embedder hosted_vllm/my-emb"):
        check_prices(_cfg(**embedded))
    check_prices(_cfg(**embedded, prices={"hosted_vllm/my-emb": {"input": 0, "output": 0}}))
    check_prices(_cfg(model=KNOWN, budget=1, embedder="openai/text-embedding-3-small"))  # in litellm's table


def test_a_routers_deployments_need_prices_unless_its_model_has_one():
    router = {"model_list": [{"model_name": "r", "litellm_params": {"model": KNOWN}}, {"model_name": "r", "litellm_params": {"model": UNKNOWN}}]}
    cfg = _cfg(model="r", router=router, budget=1)
    assert priced_models(cfg) == [("router", KNOWN), ("router", UNKNOWN)]
    with pytest.raises(ConfigError, match=f"the router's model {UNKNOWN}"):
        check_prices(cfg)
    check_prices(_cfg(model="r", router=router, budget=1, price_in=1, price_out=1))


def test_the_cli_refuses_a_budget_without_a_price_before_the_run_directory_exists(tmp_path):
    out = tmp_path / "run"
    with FaultServer() as srv:
        r = call_cli(*_run(srv, out, "--budget", "0.01"))
        assert srv.requests == 0
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"treesynth: error: --budget needs a price for {UNKNOWN}: litellm's table has none; give --price-in and --price-out "
        "(USD per million tokens) or prices: in the config"
    ]
    assert not out.exists()


def test_the_library_refuses_it_too(tmp_path):
    import treesynth

    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=f"--budget needs a price for {UNKNOWN}"):
        treesynth.generate(TASK, model=UNKNOWN, api_base="http://127.0.0.1:9/v1", budget=0.01, out=out, progress=False)
    assert not out.exists()
    with pytest.raises(ConfigError, match="--price-in and --price-out go together"):
        treesynth.generate(TASK, model=UNKNOWN, budget=0.01, price_in=1.0, out=out, progress=False)


# ---- end to end --------------------------------------------------------------------------------


def test_a_priced_unknown_model_stops_at_the_budget_and_resumes(tmp_path):
    tin, tout = 10, 100  # the server's counts for every call: at $1000 per million, $0.11 a call
    per_call = (tin + tout) * 1e-3
    out = tmp_path / "run"
    with FaultServer(FaultConfig(latency=0.01, tokens_in=tin, tokens_out=tout)) as srv:
        r = call_cli(*_run(srv, out, "--size", "30", "--budget", "0.01", "--price-in", "1000", "--price-out", "1000"))
        assert r.returncode == 3, r.stderr
        fin = _finished(r.stdout)
        assert fin["status"] == "budget" and "budget" in r.stderr.lower()
        # the first call passed the gate (nothing spent), its cost is one call's (at most its reservation): no other started
        assert srv.requests == 1 and fin["cost_usd"] == pytest.approx(per_call)
        assert json.loads((out / "state.json").read_text())["status"] == "budget"
        r2 = call_cli("run", "--resume", str(out), "--no-ui", "--json-events", "--budget", "1000")
        assert r2.returncode == 0, r2.stderr
        fin2 = _finished(r2.stdout)
        assert fin2["status"] == "complete" and fin2["cost_usd"] == pytest.approx(srv.requests * per_call)  # kept its prices
    check_run(out, 30)


def test_with_calls_in_flight_the_spend_passes_the_budget_by_less_than_one_call(tmp_path):
    tin, tout = 10, 100
    per_call = (tin + tout) * 1e-3
    budget = round(11.5 * per_call, 6)
    out = tmp_path / "run"
    with FaultServer(FaultConfig(latency=0.02, tokens_in=tin, tokens_out=tout)) as srv:
        r = call_cli(*_run(srv, out, "--size", "80", "--concurrency", "4", "--budget", str(budget), "--price-in", "1000", "--price-out", "1000"))
        assert r.returncode == 3, r.stderr
        spent = _finished(r.stdout)["cost_usd"]
        assert budget <= spent < budget + per_call, (budget, spent)
        assert srv.requests == 12
        # each call may cost its prompt and 1500 tokens out, $1.5 and more: past the budget, so one at a time
        assert srv.stats.max_in_flight == 1


@pytest.mark.parametrize("transport", ["http", pytest.param("litellm", marks=pytest.mark.slow)])
def test_given_prices_override_a_known_models_price_in_the_live_cost(tmp_path, transport):
    tin, tout = 10, 100
    with FaultServer(FaultConfig(tokens_in=tin, tokens_out=tout)) as srv:
        r = call_cli(*_run(srv, tmp_path / "run", "--size", "6", "--depth", "1", "--price-in", "1000", "--price-out", "2000",
                           model=KNOWN, transport=transport), env=cli_env(OPENAI_API_KEY="sk-test-prices-0000"))
        assert r.returncode == 0, r.stderr
        assert _finished(r.stdout)["cost_usd"] == pytest.approx(srv.requests * (tin * 1e-3 + tout * 2e-3))


def test_a_judge_models_calls_cost_its_price_from_the_config(tmp_path):
    tin, tout = 10, 100
    conf = tmp_path / "c.yaml"
    conf.write_text("judge: true\njudge_model: openai/fault-judge\nprices:\n  openai/fault-judge: {input: 3000, output: 3000}\n")
    with FaultServer(FaultConfig(tokens_in=tin, tokens_out=tout)) as srv:
        refused = call_cli(*_run(srv, tmp_path / "no", "--size", "6", "--depth", "1", "--budget", "100", "--price-in", "1000",
                                 "--price-out", "1000", "--judge", "--judge-model", "openai/other-judge"))
        assert refused.returncode == 2 and "needs a price for the judge model openai/other-judge" in refused.stderr
        r = call_cli(*_run(srv, tmp_path / "run", "--size", "6", "--depth", "1", "--budget", "100", "--price-in", "1000",
                           "--price-out", "1000", "--config", str(conf)))
        assert r.returncode == 0, r.stderr
        judged = srv.stats.steps["verdicts"]
        assert judged > 0
        expected = (srv.requests - judged) * (tin + tout) * 1e-3 + judged * (tin + tout) * 3e-3
        assert _finished(r.stdout)["cost_usd"] == pytest.approx(expected)


def test_every_command_with_a_budget_takes_the_price_flags():
    from treesynth.cli.parser import build_parser, run_flags

    p = build_parser()
    for argv in (["run", "t"], ["estimate", "t"], ["balance", "d.jsonl"], ["judge", "r"], ["baseline", "r"]):
        args = p.parse_args([*argv, "--budget", "1", "--price-in", "0.5", "--price-out", "1.5"])
        assert (args.price_in, args.price_out) == (0.5, 1.5), argv
    flags = run_flags(p.parse_args(["run", "t", "--model", UNKNOWN, "--price-in", "0.5", "--price-out", "1.5"]))
    assert build_config(flags=flags).prices[UNKNOWN].output == 1.5


def test_a_run_made_without_a_price_resumed_with_a_budget_counts_from_what_is_known(tmp_path):
    from tests.fakes import ScriptedTransport
    from treesynth.core import events as ev
    from treesynth.core.run import Run

    out = tmp_path / "r"
    cfg = build_config(flags={"task": "math word problems", "fields": "question,answer", "depth": 1, "size": 6, "pivots": 6})
    first = asyncio.run(Run.create(cfg, out, transport=ScriptedTransport(cost=None)).execute(lambda e: None))
    assert first.status == "complete" and first.cost_usd is None
    events: list = []
    run = Run.resume(out, overrides={"budget": 5.0, "price_in": 1.0, "price_out": 1.0}, transport=ScriptedTransport(cost=0.01))
    assert run.client.usage.cost_known
    asyncio.run(run.execute(events.append))
    warned = [e.message for e in events if isinstance(e, ev.RunWarning)]
    assert any("cost before this resume is partly unknown" in w for w in warned)
    assert not any("budget cannot be enforced" in w for w in warned)
