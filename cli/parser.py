"""The ``treesynth`` command line's arguments: every command's flags, and the run flags as config keys.
Light on purpose: ``--help`` and ``--version`` import nothing heavy."""

from __future__ import annotations

import argparse
from typing import Any

from treesynth.core import __version__


# flag name -> config key; the same keys are valid in a config file
def _json_object(text: str) -> dict[str, Any]:
    """``--extra-body``: a JSON object (argparse turns the ValueError into a one-line usage error)."""
    import json

    try:
        v = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e.msg} at character {e.pos}") from None
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"repeat_penalty\": 1.1}'")
    return v


RUN_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--fields", {"help": "comma-separated sample fields, e.g. question,answer"}),
    ("--preset", {"help": "gsm8k, math, code_alpaca, simpletom, or a preset .toml file"}),
    ("--model", {"help": "litellm model string (default: local/smollm2, the embedded offline model)"}),
    ("--api-base", {"dest": "api_base", "help": "base URL of an OpenAI-compatible server (vLLM, Ollama, ...)"}),
    ("--tree-model", {"dest": "tree_model", "metavar": "MODEL",
                      "help": "the model that grows the tree (pivots, criterion, assignment, coverage: a few hard calls); --model "
                      "writes the rows (default: --model; its key from the environment)"}),
    ("--tree-api-base", {"dest": "tree_api_base", "metavar": "URL",
                         "help": "the tree model's OpenAI-compatible server (default: --api-base when both models have the same provider prefix)"}),
    ("--transport", {"choices": ["auto", "litellm", "http"], "help": "how LLM calls are made: http, a native client for openai/ and hosted_vllm/ models; litellm, any provider; auto (default): http where it applies"}),
    ("--depth", {"type": int, "help": "tree depth (default 3; 0: no tree, plain sampling from the root prompt)"}),
    ("--size", {"type": int, "help": "number of samples in the dataset (default 100)"}),
    ("--pivots", {"type": int, "help": "pivot samples per node (default 12; the embedded model: 6)"}),
    ("--pivots-per-call", {"dest": "pivots_per_call", "type": int, "help": "pivots asked per call (default: all at once; the embedded model: 3)"}),
    ("--samples-per-call", {"dest": "samples_per_call", "type": int, "help": "samples asked for per generation call (default 5; the embedded model: 3)"}),
    ("--concurrency", {"type": int, "help": "most LLM calls in flight (default 16)"}),
    ("--rpm", {"type": int, "help": "requests-per-minute limit"}),
    ("--tpm", {"type": int, "help": "tokens-per-minute limit"}),
    ("--timeout", {"type": float, "help": "seconds an LLM call may go without a token (calls are streamed: a slow server that keeps "
                   "writing is never cut off; default 120)"}),
    ("--first-token-timeout", {"dest": "first_token_timeout", "type": float, "metavar": "SECONDS",
                               "help": "seconds a call may wait for its first token, and the whole limit of a call that is not "
                               "streamed (default 3 x --timeout: 360)"}),
    ("--max-retries", {"dest": "max_retries", "type": int, "help": "retries per call on transient errors (default 6)"}),
    ("--outage-timeout", {"dest": "outage_timeout", "type": float, "help": "seconds the endpoint may stay unreachable (a restart: calls wait and it is probed) before the run stops, resumable (default 600)"}),
    ("--budget", {"type": float, "help": "stop cleanly once this many USD are spent (calls in flight count at their most); the model needs a price"}),
    ("--price-in", {"dest": "price_in", "type": float, "metavar": "USD",
                    "help": "the model's price per million input tokens, with --price-out: for a model litellm's table does not price "
                    "(a --budget needs one) or a price other than its (config: prices)"}),
    ("--price-out", {"dest": "price_out", "type": float, "metavar": "USD", "help": "the model's price per million output tokens (see --price-in)"}),
    ("--tree-price-in", {"dest": "tree_price_in", "type": float, "metavar": "USD", "help": "the tree model's price per million input tokens (see --price-in)"}),
    ("--tree-price-out", {"dest": "tree_price_out", "type": float, "metavar": "USD", "help": "the tree model's price per million output tokens"}),
    ("--seed", {"type": int, "help": "seed for every random choice and call (default 0)"}),
    ("--temperature", {"type": float, "help": "sampling temperature for generation (default 0.9)"}),
    ("--executor", {"choices": ["local", "ray"], "help": "where LLM calls run: local (default) or ray, a Ray cluster (pip install 'treesynth[ray]')"}),
    ("--ray-address", {"dest": "ray_address", "metavar": "ADDRESS", "help": "Ray cluster to join ('auto': the one on this machine; default: start a local one)"}),
    ("--ray-workers", {"dest": "ray_workers", "type": int, "help": "Ray worker actors (default: one per node)"}),
    ("--small-model", {"dest": "small_model", "action": "store_const", "const": True,
                       "help": "ask in small steps, as for the embedded model (6 pivots, 3 per call, 3 samples per call, 4 values per node): for a small model behind a server"}),
    ("--extra-body", {"dest": "extra_body", "type": _json_object, "metavar": "JSON",
                      "help": "fields added to every request an OpenAI-compatible endpoint gets, e.g. '{\"repeat_penalty\": 1.1}'"}),
    ("--batch", {"action": "store_const", "const": True, "help": "leaf and judge calls through the provider's batch API at batch prices (openai/ and anthropic/ models; tree calls stay interactive)"}),
    ("--batch-linger", {"dest": "batch_linger", "type": float, "metavar": "SECONDS", "help": "seconds without a new call before a batch is sent (default 5)"}),
    ("--judge", {"action": "store_const", "const": True, "help": "a judge model checks every row against its leaf's path; failing rows are written again"}),
    ("--judge-model", {"dest": "judge_model", "metavar": "MODEL", "help": "the judge's model (default: the generation model)"}),
    ("--judge-batch", {"dest": "judge_batch", "type": int, "help": "rows the judge reads per call (default 5; the embedded model: 3)"}),
    ("--dedup-threshold", {"dest": "dedup_threshold", "type": float, "metavar": "COSINE",
                           "help": "semantic dedup: a new row within this cosine of an accepted row is written again (presets: 0.92)"}),
    ("--embedder", {"metavar": "EMBEDDER",
                    "help": "what turns rows into vectors for semantic dedup: local (default, all-MiniLM-L6-v2), a local model folder, "
                    "or openai/<model> / hosted_vllm/<model>, an OpenAI-compatible /v1/embeddings endpoint (batched, cached, counted in cost)"}),
    ("--embed-api-base", {"dest": "embed_api_base", "metavar": "URL",
                          "help": "base URL of the embeddings endpoint, e.g. a vLLM or llama.cpp server started with embeddings on (default: $OPENAI_API_BASE, else OpenAI)"}),
    ("--mode", {"metavar": "MODE", "help": "what the run does: run (default), a registered mode's name, or module:Class of a treesynth.Mode"}),
    ("--mode-options", {"dest": "mode_options", "type": _json_object, "metavar": "JSON", "help": "the mode's own settings as a JSON object"}),
    ("--tree-from", {"dest": "tree_from", "metavar": "SOURCE",
                     "help": "reuse a tree: a run directory, its tree.json, or a taxonomy file (YAML/JSON, as `treesynth tree RUN --format yaml` "
                     "writes it); its splits cost no calls, values shallower than --depth are split further; its task, fields and depth apply unless given"}),
]


def _add_run_options(p: argparse.ArgumentParser) -> None:
    for flag, kw in RUN_OPTIONS:
        p.add_argument(flag, default=None, **kw)
    p.add_argument("--config", help="YAML or TOML file with the same keys (flags override it)")
    p.add_argument("--no-cache", dest="no_cache", action="store_true", help="do not reuse cached responses")
    p.add_argument("--no-dedup", dest="no_dedup", action="store_true", help="exact duplicates only, no semantic dedup (a preset turns it on)")


def _add_price_options(p: argparse.ArgumentParser, whose: str) -> None:
    """``--price-in`` / ``--price-out`` for a command that takes a --budget but not every run option."""
    p.add_argument("--price-in", dest="price_in", type=float, metavar="USD", help=f"the price of {whose} per million input tokens (with --price-out)")
    p.add_argument("--price-out", dest="price_out", type=float, metavar="USD", help=f"the price of {whose} per million output tokens")


def run_flags(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, kw in RUN_OPTIONS:
        key = kw.get("dest") or flag.lstrip("-").replace("-", "_")
        v = getattr(args, key, None)
        if v is not None:
            out[key] = v
    if getattr(args, "no_cache", False):
        out["cache"] = False
    if getattr(args, "no_dedup", False):
        out["dedup_threshold"] = 0.0
    if getattr(args, "task", None) is not None:
        out["task"] = args.task
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="treesynth",
        description="Turn one sentence into a large, diverse, tree-partitioned dataset (TreeSynth).",
    )
    p.add_argument("--version", action="version", version=f"treesynth {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="grow a tree and synthesise a dataset", description="Grow a TreeSynth tree for TASK and synthesise --size samples.")
    r.add_argument("task", nargs="?", help="the task in one sentence (optional with --resume or a preset/config that has one)")
    _add_run_options(r)
    r.add_argument("--out", help="run directory (default runs/<slug>-<timestamp>); never overwritten")
    r.add_argument("--resume", metavar="DIR", help="continue an interrupted run")
    r.add_argument("--no-ui", dest="no_ui", action="store_true", help="headless: progress on stderr")
    r.add_argument("--json-events", dest="json_events", action="store_true", help="headless, events as JSON lines on stdout")
    r.add_argument("--report", action="store_true", help="build RUN_DIR/report.html (treesynth report) when the run completes")
    r.add_argument("--baseline", action="store_true",
                   help="when the run completes, make its plain-sampling baseline (treesynth baseline) before any report")

    e = sub.add_parser("estimate", help="expected calls, tokens and cost, before spending anything")
    e.add_argument("task", nargs="?")
    _add_run_options(e)
    e.add_argument("--fanout", type=float, help="assumed children per node (default max_values/2)")
    e.add_argument("--balance", metavar="DATA", help="estimate a `treesynth balance` of this data file instead")
    e.add_argument("--route", choices=["llm", "embed"], default="embed")
    e.add_argument("--route-batch", dest="route_batch", type=int, default=25)
    e.add_argument("--field")
    e.add_argument("--target-per-leaf", dest="target_per_leaf", type=int)

    t = sub.add_parser("tree", help="print a run's tree with sample counts, or write it as JSON, a YAML taxonomy or Mermaid",
                       description="Print RUN_DIR's tree. --format yaml writes the taxonomy `treesynth run --tree-from` reads back "
                       "(edit it first: rename, add or remove values); json is the same document with every node's id, status and rows; "
                       "mermaid is a flowchart block for a Markdown page.")
    t.add_argument("run_dir")
    t.add_argument("--format", choices=["text", "json", "yaml", "mermaid"], default="text", help="text (default), json, yaml or mermaid")
    t.add_argument("--max-depth", type=int, default=None, help="nothing below this depth (a taxonomy cut there grows again when reused)")
    t.add_argument("--examples", type=int, default=0, metavar="N", help="json/yaml: up to N of each leaf's rows as its examples (shown to its prompt when reused)")

    x = sub.add_parser("export", help="export a run's dataset")
    x.add_argument("run_dir")
    x.add_argument("--format", choices=["jsonl", "parquet", "hf", "chat", "alpaca"], default="jsonl",
                   help="jsonl, parquet; chat (OpenAI/TRL messages), alpaca (instruction/input/output); hf (a datasets directory with a dataset card)")
    x.add_argument("--out", help="destination (default: in the run directory)")
    x.add_argument("--prompt-fields", dest="prompt_fields", help="chat/alpaca: fields the prompt is made of, comma-separated (default: the preset's, else all but the last)")
    x.add_argument("--response-fields", dest="response_fields", help="chat/alpaca: fields the response is made of (default: the preset's, else the last)")
    x.add_argument("--system", help="chat: a system message before every conversation")
    x.add_argument("--push-to-hub", dest="push_to_hub", metavar="REPO", help="hf: also push the dataset and its card to this Hub repository (token from HF_TOKEN)")

    b = sub.add_parser(
        "balance", help="rebalance an existing dataset with its own tree",
        description="Grow a tree from DATA, route every row to a leaf, downsample crowded leaves and synthesise into sparse ones.",
    )
    b.add_argument("data", nargs="?", help="JSONL, Parquet or CSV file")
    b.add_argument("--field", help="text column used for pivots and routing (default: question, else the first text column)")
    b.add_argument("--fields", help="columns of a synthesised row (default: --field)")
    b.add_argument("--task", help="one-sentence description (default: inferred from the data and shown)")
    b.add_argument("--target-per-leaf", dest="target_per_leaf", type=int, help="rows per leaf after balancing")
    b.add_argument("--size", type=int, help="rows after balancing, split evenly over leaves (default: the input's size)")
    b.add_argument("--route", choices=["llm", "embed"], default="embed", help="route rows by LLM classification or by embedding similarity (default embed)")
    b.add_argument("--route-batch", dest="route_batch", type=int, default=25, help="rows per LLM routing call (default 25)")
    b.add_argument("--embedder", help="sentence-transformers model name or local path for routing and near-duplicates")
    for flag in ("--model", "--api-base", "--transport", "--depth", "--pivots", "--samples-per-call", "--concurrency", "--rpm", "--tpm", "--timeout", "--first-token-timeout", "--max-retries", "--budget", "--price-in", "--price-out", "--seed", "--temperature", "--dedup-threshold"):
        kw = dict(next(k for f, k in RUN_OPTIONS if f == flag))
        b.add_argument(flag, default=None, **kw)
    b.add_argument("--no-dedup", dest="no_dedup", action="store_true", help="new rows may nearly repeat real rows and each other (default: not within cosine 0.92)")
    b.add_argument("--config", help="YAML or TOML file with run keys (model, depth, ...)")
    b.add_argument("--no-cache", dest="no_cache", action="store_true")
    b.add_argument("--out", help="run directory (default runs/balance-<name>-<timestamp>)")
    b.add_argument("--resume", metavar="DIR", help="continue an interrupted balance run")
    b.add_argument("--no-ui", dest="no_ui", action="store_true", help="headless: progress on stderr")
    b.add_argument("--json-events", dest="json_events", action="store_true")
    b.add_argument("--report", action="store_true", help="build RUN_DIR/report.html comparing the data before and after balancing")

    bl = sub.add_parser(
        "baseline", help="the run's plain-sampling baseline: same model, settings and size, no tree (RUN_DIR/baseline)",
        description="Generate as many rows as RUN_DIR holds with the same model, fields, preset, temperature, samples per call "
        "and quality gates, but no tree: every call is made from the root prompt alone (the TreeSynth paper's temperature-sampling "
        "baseline). It goes to RUN_DIR/baseline, a run of its own (its calls and cost counted apart; run again to resume); "
        "treesynth report RUN_DIR then compares the two.",
    )
    bl.add_argument("run_dir")
    bl.add_argument("--api-base", dest="api_base", help="base URL of an OpenAI-compatible server (default: the run's)")
    bl.add_argument("--budget", type=float, help="stop cleanly once the baseline has spent this many USD")
    _add_price_options(bl, "the run's model")
    bl.add_argument("--concurrency", type=int, help="calls in flight")
    bl.add_argument("--json-events", dest="json_events", action="store_true", help="events as JSON lines on stdout")

    ex = sub.add_parser(
        "extend", help="add rows to a finished run: the same tree, its quotas re-split for --size, in the same directory",
        description="Grow RUN_DIR's dataset to --size rows (the new total, larger than the run's): the tree is kept, its "
        "quotas are split again for the new total, the rows already made are kept as they are and new ones pass the run's "
        "quality gates. Interrupted, it is carried on by the same command (or treesynth run --resume RUN_DIR).",
    )
    ex.add_argument("run_dir")
    ex.add_argument("--size", type=int, required=True, help="the dataset's new total number of rows")
    ex.add_argument("--baseline", action="store_true", help="then top the run's baseline (RUN_DIR/baseline) up to the new size")
    ex.add_argument("--model", help="the model for the new rows (default: the one the run was made with)")
    ex.add_argument("--api-base", dest="api_base", help="base URL of an OpenAI-compatible server (default: the run's)")
    ex.add_argument("--budget", type=float, help="stop cleanly once this many USD are spent (the run's total)")
    _add_price_options(ex, "--model (default: the run's)")
    ex.add_argument("--concurrency", type=int, help="most LLM calls in flight")
    ex.add_argument("--no-ui", dest="no_ui", action="store_true", help="headless: progress on stderr")
    ex.add_argument("--json-events", dest="json_events", action="store_true", help="headless, events as JSON lines on stdout")

    j = sub.add_parser(
        "judge", help="judge a run's rows against their leaves; failing rows are written again",
        description="Judge every row of RUN_DIR that has no verdict yet (a run made without --judge, or one stopped while judging); "
        "rows that fail are replaced in their leaf, so the dataset keeps its size.",
    )
    j.add_argument("run_dir")
    j.add_argument("--judge-model", dest="judge_model", metavar="MODEL", help="the judge's model (default: the run's model)")
    j.add_argument("--judge-batch", dest="judge_batch", type=int, help="rows the judge reads per call")
    j.add_argument("--model", help="the run's model for rewriting failed rows (default: the one it was made with)")
    j.add_argument("--api-base", dest="api_base", help="base URL of an OpenAI-compatible server")
    j.add_argument("--budget", type=float, help="stop cleanly once this many USD are spent (the run's total)")
    _add_price_options(j, "--model (default: the run's)")
    j.add_argument("--concurrency", type=int, help="most LLM calls in flight")
    j.add_argument("--json-events", dest="json_events", action="store_true", help="events as JSON lines on stdout")
    sub.add_parser("presets", help="list the shipped presets")

    rp = sub.add_parser(
        "report", help="diversity metrics, coverage and UMAP/t-SNE maps as one offline HTML file",
        description="Diversity metrics, leaf coverage and embedding maps of a run or dataset, compared with others: "
        "one self-contained HTML file plus its numbers as JSON next to it (metrics.json for report.html, else NAME.metrics.json for --out NAME.html).",
    )
    rp.add_argument("input", metavar="RUN_DIR_OR_FILE", help="a run directory, or a JSONL/JSON/Parquet/CSV dataset")
    rp.add_argument("--compare", nargs="+", action="extend", metavar="FILE_OR_RUN", default=[], help="datasets or runs to compare with")
    rp.add_argument("--field", help="the text field (default: the run's first text field, else 'question', else the first text column)")
    rp.add_argument("--out", help="the HTML file (default RUN_DIR/report.html, or ./report.html for a file)")
    rp.add_argument("--sample", type=int, help="use a uniform random sample of N rows of each dataset, for every metric")
    rp.add_argument("--embed-sample", dest="embed_sample", type=int, metavar="N",
                    help="embed at most N rows of each dataset (a seeded uniform random sample) for the embedding metrics and maps; "
                    "counts, duplicates, leaf coverage counts and quality stay over all rows (default 10000, or every row with --sample; "
                    "0: embed every row)")
    rp.add_argument("--seed", type=int, default=0, help="seed for every sample and map (default 0)")
    rp.add_argument("--embedder", metavar="NAME_OR_PATH", help="a local sentence-transformers model folder (default all-MiniLM-L6-v2)")
    rp.add_argument("--precision", choices=["auto", "fp32", "int8", "bf16"], default="auto",
                    help="embedding precision (auto = fp32: the same figures on every machine, run by onnxruntime where installed, "
                    "else PyTorch; int8 (onnxruntime) and bf16 (PyTorch, fast with AMX) are faster on some CPUs but approximate, "
                    "and the report says so)")
    rp.add_argument("--map-points", dest="map_points", type=int, default=10_000,
                    help="points fitted and drawn in each map, shared among the datasets (default 10000, at most 50000)")
    rp.add_argument("--no-embedding-cache", dest="no_embedding_cache", action="store_true", help="neither read nor write cached embeddings")
    rp.add_argument("--executor", choices=["local", "ray"], default="local",
                    help="where embeddings are computed: local (default) or ray (Ray Data; with --sample, the full-data metrics stream over every row)")
    rp.add_argument("--ray-address", dest="ray_address", metavar="ADDRESS", help="Ray cluster to join ('auto': the one on this machine; default: start a local one)")
    return p
