"""``treesynth export`` as a library call: a run's dataset in one format (JSONL, Parquet, chat, alpaca, or a
Hugging Face directory with its dataset card, optionally pushed to the Hub), read without locking the run
(core/reader.py), written with core/export.py's writers under core/rundir.py's names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from . import __version__
from .card import dataset_card
from .errors import ConfigError, RunDirError, TreesynthError
from .export import card_facts, hub_token, push_to_hub, write_hf, write_jsonl, write_parquet, write_records
from .jsonl import read_records
from .reader import RunReader
from .rundir import EXPORT_SOURCE, EXPORTS
from .training import alpaca_record, chat_record, roles

FORMATS = tuple(EXPORTS)  # jsonl, parquet, hf, chat, alpaca


@dataclass(frozen=True)
class Exported:
    path: Path  # the file or directory written
    url: str | None = None  # the Hub repository's page, when pushed


def run_taxonomy(run_dir: Path) -> str | None:
    """The run's tree as a taxonomy file (``treesynth tree RUN --format yaml``); None for a run without one."""
    from .treeout import tree_output

    try:
        return tree_output(run_dir, "yaml")
    except (TreesynthError, OSError, ValueError):  # a run without a readable tree still exports
        return None


def export_run(
    run_dir: Path, fmt: str = "jsonl", out: Path | None = None, *, prompt_fields: Sequence[str] | None = None,
    response_fields: Sequence[str] | None = None, system: str | None = None, push_to_hub_repo: str | None = None,
    note: Callable[[str], None] | None = None,
) -> Exported:
    """Write the run's dataset (dataset.jsonl; for a run that did not finish, its rows so far, at most its size)
    as ``fmt`` to ``out`` (default: the format's file in the run directory). ``prompt_fields``/``response_fields``
    (chat, alpaca): the roles, checked against the fields (None: the preset's, else all but the last / the last);
    ``system`` (chat): a system message (None: the preset's). ``push_to_hub_repo`` (hf): also push it there with
    its card (token from HF_TOKEN). ``note`` hears what the caller may want to say (an unfinished run).
    Errors are one line: ConfigError for options that do not fit, RunDirError, ProviderError."""
    if fmt not in EXPORTS:
        raise ConfigError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    if push_to_hub_repo and fmt != "hf":
        raise ConfigError("--push-to-hub goes with --format hf")
    token = hub_token() if push_to_hub_repo else ""
    if (prompt_fields is not None or response_fields is not None or system) and fmt not in ("chat", "alpaca"):
        raise ConfigError("--prompt-fields, --response-fields and --system go with --format chat or alpaca")
    run_dir = Path(run_dir)
    reader = RunReader.open(run_dir)
    config = reader.saved_config()
    size = int(config.get("size", 0))
    src = reader.dataset_path()
    if src is None:
        state = reader.state()
        if state.get("status") != "complete" and note is not None:
            note(f"the run is {state.get('status', 'unfinished')}; exporting the {sum(1 for _ in reader.iter_samples())} samples so far")
        src = reader.p(EXPORT_SOURCE)
        write_jsonl(reader.iter_samples(), src, limit=size or None)
    dest = Path(out) if out else run_dir / EXPORTS[fmt]
    if dest.exists() and fmt == "hf":
        raise RunDirError(f"{str(dest)!r} already exists")
    fields = tuple(config.get("fields") or ())
    url = None
    if fmt in ("chat", "alpaca"):
        strict = prompt_fields is not None or response_fields is not None
        r = roles(fields, tuple(prompt_fields or ()) or (() if strict else tuple(config.get("prompt_fields") or ())),
                  tuple(response_fields or ()) or (() if strict else tuple(config.get("response_fields") or ())),
                  system if system is not None else config.get("system_prompt"), strict=strict)
        convert = chat_record if fmt == "chat" else alpaca_record
        write_records(read_records(src), dest, lambda row: convert(row, r))
    elif fmt == "jsonl":
        write_jsonl(read_records(src), dest)
    elif fmt == "parquet":
        write_parquet(src, dest)
    else:
        try:
            r = roles(fields, tuple(config.get("prompt_fields") or ()), tuple(config.get("response_fields") or ()))
            pr, rs = r.prompt, r.response
        except ConfigError:
            pr, rs = (), ()
        facts = card_facts(config, read_records(src), reader.verdicts(), reader.rejected(), reader.report_metrics(), pr, rs, version=__version__,
                           data_files="*.arrow")
        taxonomy = run_taxonomy(run_dir)
        facts = replace(facts, taxonomy=taxonomy)
        ds = write_hf(src, dest, dataset_card(facts))
        if taxonomy:
            (dest / "tree.yaml").write_text(taxonomy, encoding="utf-8")
        if push_to_hub_repo:
            url = push_to_hub(ds, push_to_hub_repo, dataset_card(replace(facts, data_files="data/train-*")), token)
    return Exported(dest, url)
