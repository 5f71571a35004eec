"""Model roles: the tree's steps on --tree-model (its own endpoint, price and client), the rows on --model, the
judge on --judge-model; usage and cost kept per role everywhere (events, state, summary, estimate), one budget."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.fakes import ScriptedTransport
from treesynth.core import events as ev
from treesynth.core.config import build_config
from treesynth.core.errors import ConfigError, ProviderError
from treesynth.core.estimate import estimate, estimate_lines
from treesynth.core.llm.types import UsageTotals
from treesynth.core.preflight import check_prices, check_provider
from treesynth.core.progress import Progress, closing_rows, status_line
from treesynth.core.run import Run
from treesynth.core.taxonomy import GivenShape, given_shape, parse_taxonomy

TREE_STEPS = {"pivots", "criterion", "assign", "classify", "supplement"}


def _cfg(**kw):
    flags = {"task": "math word problems", "fields": "question,answer", "depth": 2, "size": 30, "pivots": 6,
             "model": "openai/small", "api_base": "http://127.0.0.1:9/v1", "tree_model": "openai/big"}
    flags.update(kw)
    return build_config(flags=flags)


def _run(run):
    events: list[ev.Event] = []
    fin = asyncio.run(run.execute(events.append))
    return fin, events


def test_tree_calls_go_to_the_tree_model_and_rows_to_the_model_counted_and_priced_apart(tmp_path):
    tree, rows = ScriptedTransport(model="openai/big", cost=0.01), ScriptedTransport(model="openai/small", cost=0.001)
    run = Run.create(_cfg(), tmp_path / "r", transport=rows, tree_transport=tree)
    fin, events = _run(run)
    assert fin.status == "complete" and fin.rows == 30
    assert set(tree.calls) <= TREE_STEPS and tree.calls["criterion"] >= 1  # the tree model only grows the tree
    assert set(rows.calls) == {"gen"}  # the row model only writes rows
    n_tree, n_rows = sum(tree.calls.values()), sum(rows.calls.values())
    by = {r.role: r for r in fin.roles}
    assert set(by) == {"tree", "rows"}
    assert (by["tree"].model, by["tree"].requests) == ("openai/big", n_tree)
    assert (by["rows"].model, by["rows"].requests) == ("openai/small", n_rows)
    assert by["tree"].cost_usd == pytest.approx(0.01 * n_tree) and by["rows"].cost_usd == pytest.approx(0.001 * n_rows)
    assert fin.cost_usd == pytest.approx(0.01 * n_tree + 0.001 * n_rows) and fin.requests == n_tree + n_rows
    last = [e for e in events if isinstance(e, ev.Usage)][-1]
    assert {r.role: r.requests for r in last.roles} == {"tree": n_tree, "rows": n_rows}
    # the summary, the live line and the saved state carry them
    text = dict(closing_rows(fin))["by role"]
    assert text.startswith("tree $") and "openai/big" in text and "rows $" in text and "openai/small" in text
    p = Progress()
    for e in events:
        p.apply(e)
    assert f"tree ${0.01 * n_tree:.4f} ({n_tree} req)" in status_line(p)
    saved = json.loads((tmp_path / "r" / "state.json").read_text())["usage"]["roles"]
    assert saved["tree"]["model"] == "openai/big" and saved["tree"]["requests"] == n_tree
    assert saved["rows"]["requests"] == n_rows
    # the events file says so too
    finished = [json.loads(x) for x in (tmp_path / "r" / "events.jsonl").read_text().splitlines() if '"run_finished"' in x]
    assert {r["role"] for r in finished[-1]["roles"]} == {"tree", "rows"}


def test_one_model_keeps_one_client_and_still_splits_its_cost_by_role(tmp_path):
    t = ScriptedTransport(model="openai/small", cost=0.002)
    run = Run.create(_cfg(tree_model=None), tmp_path / "r", transport=t)
    assert run.tree_client is run.client and run.clients == [run.client]
    fin, _ = _run(run)
    by = {r.role: r for r in fin.roles}
    assert by["tree"].requests + by["rows"].requests == fin.requests == sum(t.calls.values())
    assert by["tree"].model == by["rows"].model == "openai/small"


def test_the_budget_covers_every_role(tmp_path):
    tree, rows = ScriptedTransport(model="openai/big", cost=0.5), ScriptedTransport(model="openai/small", cost=0.0)
    run = Run.create(_cfg(budget=2.0, prices={"openai/big": {"input": 1, "output": 1}, "openai/small": {"input": 0, "output": 0}}),
                     tmp_path / "r", transport=rows, tree_transport=tree)
    fin, _ = _run(run)
    assert fin.status == "budget"
    assert fin.cost_usd is not None and 2.0 <= fin.cost_usd <= 2.0 + 0.5 * 2  # past the limit by the calls in flight at most
    by = {r.role: r for r in fin.roles}
    assert by["tree"].cost_usd is not None and by["tree"].cost_usd >= 2.0  # the tree model's calls spent it, and were stopped
    assert fin.rows < 30


def test_a_resume_keeps_the_roles_usage_and_may_change_the_tree_model(tmp_path):
    tree, rows = ScriptedTransport(model="openai/big", cost=0.01), ScriptedTransport(model="openai/small", cost=0.001)
    run = Run.create(_cfg(), tmp_path / "r", transport=rows, tree_transport=tree)

    stopped = {"n": 0}

    def stop_after_rows(e):
        if isinstance(e, ev.LeafProgress):
            stopped["n"] += 1
            if stopped["n"] == 2:
                run.request_stop()

    asyncio.run(run.execute(stop_after_rows))
    before = UsageTotals.from_dict(json.loads((tmp_path / "r" / "state.json").read_text())["usage"])
    assert before.roles["tree"].requests >= 1
    tree2 = ScriptedTransport(model="openai/bigger", cost=0.02)
    run2 = Run.resume(tmp_path / "r", overrides={"tree_model": "openai/bigger"}, transport=rows, tree_transport=tree2)
    fin, _ = _run(run2)
    assert fin.status == "complete" and fin.rows == 30
    by = {r.role: r for r in fin.roles}
    assert by["tree"].requests >= before.roles["tree"].requests
    assert by["rows"].requests > before.roles["rows"].requests


def test_usage_totals_round_trip_their_roles():
    u = UsageTotals()
    r = u.role("tree", "openai/big")
    r.requests, r.tokens_in, r.tokens_out, r.cost = 3, 100, 50, 0.25
    u.role("rows", "openai/small").cost_known = False
    back = UsageTotals.from_dict(json.loads(json.dumps(u.to_dict())))
    assert back.roles["tree"].to_dict() == r.to_dict()
    assert back.roles["rows"].cost_usd is None
    assert UsageTotals.from_dict({"roles": {"nonsense": {}, "tree": "x"}}).roles == {}


# ---- config ------------------------------------------------------------------------------------------------


def test_the_tree_role_config():
    c = _cfg()
    assert c.has_tree_role and c.tree_role().model == "openai/big"
    assert c.tree_role().api_base == "http://127.0.0.1:9/v1"  # same provider prefix: the same endpoint
    other = _cfg(tree_model="anthropic/claude-3-5-haiku-latest")
    assert other.tree_role().api_base is None  # another provider: its own endpoint
    own = _cfg(tree_model=None, tree_api_base="http://10.0.0.2:8000/v1/")
    assert own.has_tree_role and own.tree_role().model == "openai/small" and own.tree_role().api_base == "http://10.0.0.2:8000/v1"
    assert not _cfg(tree_model="openai/small").has_tree_role  # the same model at the same place: one client
    assert not _cfg(tree_model=None).has_tree_role
    priced = _cfg(tree_price_in=3, tree_price_out=15, price_in=0.1, price_out=0.4).prices
    assert (priced["openai/big"].input, priced["openai/big"].output) == (3, 15) and priced["openai/small"].input == 0.1
    with pytest.raises(ConfigError, match="--tree-price-in and --tree-price-out go together"):
        _cfg(tree_price_in=3)
    with pytest.raises(ConfigError, match="tree_api_base"):
        _cfg(tree_api_base="ftp://x")


def test_a_budget_refuses_an_unpriced_tree_model_naming_its_flags():
    cfg = _cfg(budget=1.0, price_in=0.1, price_out=0.4)
    with pytest.raises(ConfigError, match=r"the tree model openai/big.*--tree-price-in and --tree-price-out"):
        check_prices(cfg)
    check_prices(_cfg(budget=1.0, price_in=0.1, price_out=0.4, tree_price_in=1, tree_price_out=2))


def test_an_unreachable_tree_endpoint_is_one_line_before_any_call():
    cfg = _cfg(model="local/smollm2", api_base=None, tree_model="openai/big", tree_api_base="http://127.0.0.1:9/v1")
    with pytest.raises(ProviderError, match=r"^tree model: cannot reach --tree-api-base http://127.0.0.1:9/v1"):
        check_provider(cfg)


# ---- estimate ----------------------------------------------------------------------------------------------


def test_the_estimate_prices_each_role_at_its_own_model():
    cfg = _cfg(size=200)
    est = estimate(cfg, price=lambda i, o: (i + o) * 1e-6, tree_price=lambda i, o: (i + o) * 1e-5)
    by = dict(est.roles)
    tin, tout = est.role_tokens("tree")
    assert by["tree"] == pytest.approx((tin + tout) * 1e-5) and tin > 0
    rin, rout = est.role_tokens("rows")
    assert by["rows"] == pytest.approx((rin + rout) * 1e-6) and rin + tin == est.tokens_in
    assert est.cost_usd == pytest.approx(by["tree"] + by["rows"])
    unpriced = estimate(cfg, price=lambda i, o: 0.0, tree_price=lambda i, o: None)
    assert unpriced.cost_usd is None and dict(unpriced.roles)["rows"] == 0.0
    lines = "\n".join(estimate_lines(_cfg(size=200, tree_price_in=3, tree_price_out=15, price_in=0.1, price_out=0.4)))
    assert "tree model:     openai/big at http://127.0.0.1:9/v1" in lines and "cost by role:   tree ~$" in lines


def test_the_estimate_counts_no_calls_for_a_given_trees_splits(tmp_path):
    doc = {"tree": {"dimension": "topic", "values": [
        {"value": "money", "dimension": "operation", "values": ["adding", "taking away"]},
        {"value": "time"},
        {"value": "shapes", "leaf": True},
    ]}}
    tax = parse_taxonomy(doc, task="math word problems", fields=("question", "answer"), depth=3)
    shape = given_shape(tax)
    assert shape == GivenShape(splits=2, leaves=1, open=(1, 2, 2))
    cfg = _cfg(depth=3, size=600, tree_model=None)
    grown = estimate(cfg)
    given = estimate(cfg, given=shape)
    assert given.tree_calls < grown.tree_calls
    # a tree given whole to the depth costs no tree call at all
    full = given_shape(parse_taxonomy({"tree": {"dimension": "topic", "values": ["money", "time"]}}, task="t", fields=("question", "answer"), depth=1))
    assert estimate(_cfg(depth=1, size=50, tree_model=None), given=full).tree_calls == 0
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    lines = "\n".join(estimate_lines(_cfg(depth=3, size=600, tree_model=None, tree_from=str(path))))
    assert "its 2 given split(s) cost none" in lines


def test_a_saved_usage_gives_the_same_role_costs_as_the_live_one():
    u = UsageTotals()
    r = u.role("rows", "openai/small")
    r.requests, r.cost = 4, 0.5
    t = u.role("tree", "openai/big")
    t.requests, t.cost_known = 2, False
    assert ev.roles_from_usage(u.to_dict()) == ev.role_costs(u.roles)
    assert [x.role for x in ev.roles_from_usage(u.to_dict())] == ["tree", "rows"]
    assert ev.roles_from_usage({}) == ()


def test_the_tui_shows_cost_by_role_when_the_roles_have_models_of_their_own():
    from treesynth.tui.format import stats_usage_line

    p = Progress()
    p.cost_usd = 0.3
    p.roles = (ev.RoleCost(role="tree", model="a/big", requests=1, tokens_in=1, tokens_out=1, cost_usd=0.2),
               ev.RoleCost(role="rows", model="a/small", requests=1, tokens_in=1, tokens_out=1, cost_usd=0.1))
    assert "spent $0.3000 (tree $0.2000, rows $0.1000)" in stats_usage_line(p, None).plain
    p.roles = tuple(ev.RoleCost(role=r.role, model="a/one", requests=1, tokens_in=1, tokens_out=1, cost_usd=0.1) for r in p.roles)
    assert "tree $" not in stats_usage_line(p, None).plain  # one model: the total says it all


def test_the_library_takes_a_tree_model_and_its_dataset_says_what_each_role_cost(tmp_path):
    import treesynth

    tree, rows = ScriptedTransport(model="openai/big", cost=0.01), ScriptedTransport(model="openai/small", cost=0.001)
    cfg = treesynth.config("math word problems", fields=["question", "answer"], depth=1, size=6, pivots=6,
                           model="openai/small", api_base="http://127.0.0.1:9/v1", tree_model="openai/big")
    run = Run.create(cfg, tmp_path / "r", transport=rows, tree_transport=tree)
    fin, _ = _run(run)
    assert fin.status == "complete"
    ds = treesynth.open(tmp_path / "r")
    assert ds.usage["roles"]["tree"]["model"] == "openai/big" and ds.usage["roles"]["rows"]["requests"] == sum(rows.calls.values())
    assert ds.usage["cost"] == pytest.approx(fin.cost_usd)
