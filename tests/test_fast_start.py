"""The native http path starts without litellm (3.5-4.7 s to import): prices read as data from
litellm's bundled cost map give what litellm's calculator gives."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import cli_env
from treesynth.core.llm.costmap import Tiered, token_prices
from treesynth.core.llm.pricing import call_price

MODELS = ["openai/gpt-4o-mini", "openai/gpt-4o", "openai/gpt-4.1-nano", "openai/gpt-3.5-turbo", "openai/o3-mini"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.slow
def test_cost_map_prices_match_litellms_calculator(model):
    from treesynth.core.llm.litellm_loader import load_litellm

    litellm = load_litellm()
    price = call_price(model)
    assert price is not None
    for tin, tout in ((1234, 567), (10, 0), (0, 999)):
        a, b = litellm.cost_per_token(model=model, prompt_tokens=tin, completion_tokens=tout)
        assert price(tin, tout) == pytest.approx(a + b, rel=1e-9, abs=1e-15)
    p = token_prices(model)
    assert p is not None and price(1000, 0, cached=400) == pytest.approx(600 * p.input + 400 * p.cached_input)


def test_unpriced_and_tiered_models():
    assert call_price("openai/smollm2") is None and token_prices("hosted_vllm/my-model") is None
    assert call_price("local/smollm2")(100, 100) == 0.0
    with pytest.raises(Tiered):  # prices by prompt size in the map (pinned litellm): litellm's own calculator then
        token_prices("openai/gpt-5.6")
    from treesynth.core.llm.litellm_loader import load_litellm

    a, b = load_litellm().cost_per_token(model="openai/gpt-5.6", prompt_tokens=1234, completion_tokens=567)
    assert call_price("openai/gpt-5.6")(1234, 567) == pytest.approx(a + b)


@pytest.mark.slow
def test_a_run_on_the_http_path_never_imports_litellm(stub, tmp_path):
    code = (
        "import sys\n"
        "from treesynth.cli.main import main\n"
        f"rc = main(['run', 't', '--no-ui', '--model', 'openai/stub', '--api-base', {stub.url!r}, '--size', '5', '--depth', '1',"
        f" '--pivots', '4', '--fields', 'question,answer', '--out', {str(tmp_path / 'r')!r}])\n"
        "print('RC', rc, 'LITELLM', 'litellm' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert "RC 0 LITELLM False" in r.stdout, r.stderr[-2000:]
    # without an api_base the key is checked without litellm too
    code = (
        "import sys\nfrom treesynth.cli.main import main\n"
        f"rc = main(['run', 't', '--no-ui', '--model', 'openai/gpt-4o-mini', '--size', '5', '--out', {str(tmp_path / 'k')!r}])\n"
        "print('RC', rc, 'LITELLM', 'litellm' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert "RC 2 LITELLM False" in r.stdout and "missing API key for openai/gpt-4o-mini: set OPENAI_API_KEY" in r.stderr, r.stderr


@pytest.mark.slow
def test_estimate_prices_from_the_cost_map_without_litellm():
    """`treesynth estimate` for an openai/ model: the same price litellm's calculator gives, without importing it."""
    code = (
        "import sys\nfrom treesynth.cli.main import main\n"
        "rc = main(['estimate', 'math word problems', '--model', 'openai/gpt-4o-mini', '--size', '1000', '--fields', 'question,answer'])\n"
        "print('RC', rc, 'LITELLM', 'litellm' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=cli_env(OPENAI_API_KEY="sk-test"), capture_output=True, text=True, timeout=300)
    assert "RC 0 LITELLM False" in r.stdout, r.stdout[-1000:] + r.stderr[-2000:]
    assert "$" in r.stdout and "unknown" not in r.stdout.split("cost")[-1][:40]
