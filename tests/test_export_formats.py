"""Training exports (chat, alpaca), the Hugging Face directory with its dataset card, and the Hub push's errors."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from tests.conftest import call_cli, read_jsonl
from tests.fakes import ScriptedTransport, hash_embedder
from treesynth.core.card import Branch, CardFacts, dataset_card, md, size_category
from treesynth.core.config import build_config
from treesynth.core.errors import ConfigError
from treesynth.core.run import Run
from treesynth.core.training import Roles, alpaca_record, chat_record, roles


# ---------------------------------------------------------------- pure
def test_roles_defaults_presets_and_flags():
    assert roles(("question", "answer")) == Roles(("question",), ("answer",))
    assert roles(("instruction", "input", "output")) == Roles(("instruction", "input"), ("output",))
    assert roles(("story", "question", "answer"), ("story", "question"), ("answer",), " be brief ") == Roles(("story", "question"), ("answer",), "be brief")
    assert roles(("a", "b", "c"), response=("b",)) == Roles(("a", "c"), ("b",))
    # a preset's hints that do not fit the fields in use fall back to the default
    assert roles(("x", "y"), ("question",), ("answer",)) == Roles(("x",), ("y",))
    with pytest.raises(ConfigError, match="unknown field"):
        roles(("x", "y"), ("question",), ("y",), strict=True)
    with pytest.raises(ConfigError, match="both prompt and response"):
        roles(("x", "y"), ("x",), ("x",), strict=True)
    with pytest.raises(ConfigError, match="one field"):
        roles(("text",))


def test_chat_and_alpaca_records():
    row = {"id": "0.1/0/0", "path": [], "story": "Ann hid a ball.", "question": "Where is it?", "answer": "In the box."}
    r = roles(("story", "question", "answer"), system="You reason about beliefs.")
    assert chat_record(row, r) == {"messages": [
        {"role": "system", "content": "You reason about beliefs."},
        {"role": "user", "content": "story: Ann hid a ball.\n\nquestion: Where is it?"},
        {"role": "assistant", "content": "In the box."},
    ]}
    assert alpaca_record(row, r) == {"instruction": "Ann hid a ball.", "input": "Where is it?", "output": "In the box."}
    one = roles(("question", "answer"))
    assert alpaca_record({"question": "Q?", "answer": "A"}, one) == {"instruction": "Q?", "input": "", "output": "A"}
    assert chat_record({"question": "Q?", "answer": "A"}, one)["messages"][0] == {"role": "user", "content": "Q?"}


def test_card_escapes_model_text_and_parses():
    from huggingface_hub import DatasetCard

    facts = CardFacts(
        task='Math "word" problems | <script>alert(1)</script>', model="openai/smollm2", created="2026-12-02", rows=1500,
        fields=("question", "answer"), prompt_fields=("question",), response_fields=("answer",), leaves=12, depth=2,
        branches=(Branch("Setting", "shop | <b>market</b>", 900, 7), Branch("Setting", "school\nyard", 600, 5)),
        metrics={"vendi_score": {"value": 12.5}, "mean_cosine_similarity": {"value": 0.31}, "near_duplicate_rate": 0.02},
        quality={"judged": 1600, "passed": 1500, "validator_rejected": 40, "near_duplicates": 9}, preset="gsm8k", version="0.1.0",
    )
    text = dataset_card(facts)
    card = DatasetCard(text)
    assert card.data.license == "unknown" and card.data.size_categories == ["1K<n<10K"] and "synthetic" in card.data.tags
    assert card.data.pretty_name.startswith('Math "word" problems')
    assert "<script>" not in text and "<b>" not in text and "&lt;script&gt;" in text
    assert "| shop \\| &lt;b&gt;market&lt;/b&gt; | 900 | 60.0% | 7 |" in text and "| school yard | 600 | 40.0% | 5 |" in text
    assert "Vendi score (higher: more diverse) | 12.5 |" in text and "1,500 of 1,600 (93.8%)" in text
    assert "Near-duplicate rate" in text and "Rows | 1,500" in text
    assert size_category(999) == "n<1K" and size_category(1_000_000) == "1M<n<10M"
    assert md("a" * 300, 10).endswith("…") and len(md("a" * 300, 10)) == 10


def test_the_cards_tree_block_cannot_be_ended_by_the_models_text():
    base = CardFacts(task="t", model="m", created="2026-12-06", rows=1, fields=("question",))
    text = dataset_card(replace(base, taxonomy="tree:\n  dimension: x\n  values:\n  - value: '```\n# injected'\n"))
    assert "\n````yaml\n" in text and "\n````\n" in text  # a fence longer than the text's backticks
    long = "tree:\n" + "".join(f"  - value: v{i}\n" for i in range(1000))
    text = dataset_card(replace(base, taxonomy=long))
    assert "v298" in text and "v299" not in text and "701 more lines in `tree.yaml`" in text


# ---------------------------------------------------------------- the CLI on a finished run
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "r"
    cfg = build_config(flags={"preset": "gsm8k", "depth": 2, "size": 30, "pivots": 6, "dedup_threshold": 0, "validators": [], "judge": True})
    cfg = cfg.model_copy(update={"validators": (), "field_patterns": {}})  # the scripted rows are templates, not GSM8K rows
    run = Run.create(cfg, out, transport=ScriptedTransport(judge_fails=("item 1",)), embed=hash_embedder)
    fin = asyncio.run(run.execute(lambda e: None))
    assert fin.status == "complete"
    return out


def test_export_chat_loads_into_datasets(finished, tmp_path):
    import datasets

    dest = tmp_path / "chat.jsonl"
    r = call_cli("export", str(finished), "--format", "chat", "--system", "Solve step by step.", "--out", str(dest))
    assert r.returncode == 0, r.stderr
    ds = datasets.load_dataset("json", data_files=str(dest), split="train")
    rows = read_jsonl(finished / "dataset.jsonl")
    assert len(ds) == len(rows) == 30 and ds.column_names == ["messages"]
    for rec, row in zip(ds, rows, strict=True):
        assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
        assert rec["messages"][1]["content"] == row["question"] and rec["messages"][2]["content"] == row["answer"]


def test_export_alpaca_with_chosen_fields(finished, tmp_path):
    import datasets

    dest = tmp_path / "alpaca.jsonl"
    r = call_cli("export", str(finished), "--format", "alpaca", "--prompt-fields", "answer", "--response-fields", "question", "--out", str(dest))
    assert r.returncode == 0, r.stderr
    ds = datasets.load_dataset("json", data_files=str(dest), split="train")
    rows = read_jsonl(finished / "dataset.jsonl")
    assert ds.column_names == ["instruction", "input", "output"] and len(ds) == 30
    assert ds[0] == {"instruction": rows[0]["answer"], "input": "", "output": rows[0]["question"]}
    # the default file is not a copy of dataset.jsonl under another name
    assert call_cli("export", str(finished), "--format", "alpaca").returncode == 0
    assert (finished / "export.alpaca.jsonl").read_bytes() != (finished / "dataset.jsonl").read_bytes()


def test_export_hf_writes_a_dataset_with_its_card(finished, tmp_path):
    import datasets
    from huggingface_hub import DatasetCard

    dest = tmp_path / "hf"
    r = call_cli("export", str(finished), "--format", "hf", "--out", str(dest))
    assert r.returncode == 0, r.stderr
    ds = datasets.load_from_disk(str(dest))
    assert len(ds) == 30 and {"question", "answer", "path", "leaf_id", "judge"} <= set(ds.column_names)
    card = DatasetCard.load(dest / "README.md")
    assert card.data.license == "unknown" and card.data.tags == ["synthetic", "treesynth"]
    text = card.text
    assert "| Rows | 30 |" in text and "Prompt / response | question / answer" in text
    assert "## The tree's top-level branches" in text and "setting 0" in text
    verdicts = read_jsonl(finished / "verdicts.jsonl")
    passed = sum(v["pass"] for v in verdicts)
    assert passed == 30 and f"{passed:,} of {len(verdicts):,}" in text  # the judge failed the planted rows; they were rewritten
    assert call_cli("export", str(finished), "--format", "hf", "--out", str(dest)).returncode == 2  # never over an existing one
    # the tree travels with the dataset: tree.yaml beside the card (what --tree-from reads), and in the card
    tree_yaml = (dest / "tree.yaml").read_text()
    assert tree_yaml == call_cli("tree", str(finished), "--format", "yaml").stdout.removesuffix("\n")  # (the CLI prints it)
    assert "## The tree" in text and "```yaml\n" in text and "dimension: setting 0" in text


@pytest.mark.parametrize(("args", "env", "msg"), [
    (["--format", "hf", "--push-to-hub", "me/data"], {"HF_TOKEN": ""}, "needs a Hugging Face token in HF_TOKEN"),
    (["--format", "hf", "--push-to-hub", "me/data"], {"HF_TOKEN": "hf_x", "HF_HUB_OFFLINE": "1"}, "could not push to the Hub repository 'me/data'"),
    (["--format", "jsonl", "--push-to-hub", "me/data"], {}, "--push-to-hub goes with --format hf"),
    (["--format", "chat", "--prompt-fields", "nope"], {}, "unknown field(s) nope"),
    (["--format", "parquet", "--system", "x"], {}, "go with --format chat or alpaca"),
])
def test_export_errors_are_one_line(finished, tmp_path, args, env, msg):
    r = call_cli("export", str(finished), *args, "--out", str(tmp_path / "x"), env=env)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x").exists() or env.get("HF_HUB_OFFLINE")  # only a failed push leaves its written directory
