"""Tests for run configuration (core/config.py): precedence, files, presets, validation, redaction."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from treesynth.core.config import RunConfig, build_config, redact, validate_partial
from treesynth.core.errors import ConfigError


def one_line(e: BaseException) -> str:
    s = str(e)
    assert "\n" not in s and s.strip() == s and s
    return s


# ---------------------------------------------------------------- basics and precedence
def test_defaults():
    cfg = build_config(flags={"task": "  Short   stories\n about cats "})
    assert isinstance(cfg, RunConfig)
    assert cfg.task == "Short stories about cats"
    assert cfg.fields == ("text",)
    assert cfg.depth == 3 and cfg.size == 100


def test_none_flags_do_not_override(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('task = "from file"\ndepth = 4\n')
    cfg = build_config(flags={"task": None, "depth": None}, config_file=f)
    assert cfg.task == "from file" and cfg.depth == 4


def test_precedence_preset_file_flags(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('preset = "gsm8k"\ntask = "file task"\ndepth = 4\nsize = 50\n')
    cfg = build_config(config_file=f)
    assert cfg.task == "file task"  # file beats preset
    assert cfg.fields == ("question", "answer")  # preset fills what the file leaves out
    assert cfg.depth == 4 and cfg.size == 50
    cfg = build_config(flags={"task": "flag task", "size": 7}, config_file=f)
    assert cfg.task == "flag task"  # flags beat the file
    assert cfg.size == 7
    assert cfg.depth == 4


def test_base_below_file_below_flags(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("depth: 5\nseed: 3\n")
    cfg = build_config(base={"task": "base task", "depth": 2, "seed": 1, "pivots": 9}, config_file=f, flags={"seed": 8})
    assert (cfg.task, cfg.depth, cfg.seed, cfg.pivots) == ("base task", 5, 8, 9)


def test_flag_preset_applies_to_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("depth = 2\n")
    cfg = build_config(flags={"preset": "math"}, config_file=f)
    assert cfg.fields == ("problem", "solution")
    assert cfg.depth == 2
    assert cfg.style and "LaTeX" in cfg.style


def test_config_file_dash_keys_normalised(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('task = "t"\nsamples-per-call = 7\n')
    assert build_config(config_file=f).samples_per_call == 7


def test_json_config_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"task": "t", "fields": ["a", "b"]}')
    assert build_config(config_file=f).fields == ("a", "b")


def test_fields_from_comma_string():
    assert build_config(flags={"task": "t", "fields": " q , a ,"}).fields == ("q", "a")


# ---------------------------------------------------------------- presets
def test_preset_gsm8k():
    cfg = build_config(flags={"preset": "gsm8k"})
    assert cfg.fields == ("question", "answer")
    assert "GSM8K" in cfg.task
    assert set(cfg.field_descriptions) == {"question", "answer"}
    assert cfg.style


def test_preset_name_case_and_dash():
    assert build_config(flags={"preset": "Code-Alpaca"}).preset == "Code-Alpaca"


def test_preset_fields_overridden_by_flags():
    cfg = build_config(flags={"preset": "gsm8k", "fields": "problem,solution"})
    assert cfg.fields == ("problem", "solution")
    assert cfg.field_descriptions == {}
    cfg = build_config(flags={"preset": "gsm8k", "fields": ["question", "rationale"]})
    assert set(cfg.field_descriptions) == {"question"}


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"unknown preset 'nope' \(available: .*gsm8k") as ei:
        build_config(flags={"preset": "nope", "task": "t"})
    one_line(ei.value)


def test_preset_name_too_long_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown preset"):
        build_config(flags={"preset": "x" * 400, "task": "t"})


def test_preset_from_path(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('task = "custom task"\nfields = ["prompt", "response"]\n')
    cfg = build_config(flags={"preset": str(p)})
    assert cfg.task == "custom task" and cfg.fields == ("prompt", "response")


def test_preset_with_unknown_keys(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('task = "t"\ndepth = 3\n')
    with pytest.raises(ConfigError, match="unknown keys: depth"):
        build_config(flags={"preset": str(p)})


def test_preset_must_be_string():
    with pytest.raises(ConfigError, match="preset: must be a name or a path"):
        build_config(flags={"preset": 3, "task": "t"})


# ---------------------------------------------------------------- files
@pytest.mark.parametrize("name,text", [("c.toml", 'task = "t"\nfoo = 1\n'), ("c.yaml", "task: t\nfoo: 1\n"), ("c.yml", "task: t\nfoo: 1\n")])
def test_unknown_key_in_file(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError) as ei:
        build_config(config_file=f)
    assert one_line(ei.value) == "unknown config key 'foo'"


def test_unknown_flag_key():
    with pytest.raises(ConfigError, match="^unknown config key 'bogus'$"):
        build_config(flags={"task": "t", "bogus": 1})


@pytest.mark.parametrize(
    "name,text",
    [
        ("c.toml", 'task = "unterminated\n'),
        ("c.toml", "task = \n"),
        ("c.toml", "[a\nb = 1\n"),
        ("c.yaml", "task: [unclosed\n"),
        ("c.yaml", "task: t\n  bad: indent: here\n"),
        ("c.json", "{not json"),
    ],
)
def test_malformed_file(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError) as ei:
        build_config(config_file=f)
    assert one_line(ei.value).startswith(f"malformed config file {str(f)!r}")


@pytest.mark.parametrize("name,text", [("c.yaml", "- a\n- b\n"), ("c.json", "[1, 2]"), ("c.yaml", "just a string\n")])
def test_file_top_level_not_a_table(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError, match="^malformed config file .*expected a table"):
        build_config(config_file=f)


def test_empty_yaml_file_means_no_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("")
    assert build_config(config_file=f, flags={"task": "t"}).task == "t"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(config_file=tmp_path / "nope.toml", flags={"task": "t"})


def test_bad_extension(tmp_path):
    f = tmp_path / "c.ini"
    f.write_text("task=t")
    with pytest.raises(ConfigError, match=r"must end in \.toml"):
        build_config(config_file=f)


def test_binary_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError) as ei:
        build_config(config_file=f)
    one_line(ei.value)


# ---------------------------------------------------------------- validation errors
def test_missing_task():
    with pytest.raises(ConfigError, match="^missing task"):
        build_config(flags={"depth": 2})


@pytest.mark.parametrize("task", ["", "   ", "\n\t"])
def test_empty_task(task):
    with pytest.raises(ConfigError) as ei:
        build_config(flags={"task": task})
    assert one_line(ei.value) == "task: the task is empty: describe the data in one sentence"


def test_task_too_long():
    with pytest.raises(ConfigError, match="task: the task is too long"):
        build_config(flags={"task": "word " * 1000})


@pytest.mark.parametrize(("key", "value", "least"), [("depth", -1, 0), ("size", 0, 1)])
def test_too_small_depth_and_size(key, value, least):
    with pytest.raises(ConfigError) as ei:
        build_config(flags={"task": "t", key: value})
    assert one_line(ei.value).startswith(f"{key}: ")
    assert f"greater than or equal to {least}" in str(ei.value)


def test_depth_zero_is_plain_sampling():
    assert build_config(flags={"task": "t", "depth": 0}).depth == 0  # no tree: the baseline (treesynth baseline)


def test_depth_too_large_and_wrong_type():
    with pytest.raises(ConfigError, match="^depth: .*less than or equal to 8"):
        build_config(flags={"task": "t", "depth": 9})
    with pytest.raises(ConfigError, match="^depth: "):
        build_config(flags={"task": "t", "depth": "deep"})


@pytest.mark.parametrize("field", ["id", "leaf_id", "path", "slot"])
def test_reserved_field_names(field):
    with pytest.raises(ConfigError, match=f"field name '{field}' is reserved") as ei:
        build_config(flags={"task": "t", "fields": f"question,{field}"})
    one_line(ei.value)


@pytest.mark.parametrize("fields", ["1abc", "has space", "dash-ed", "x" * 41, "naïve", ["ok", "bad\nname"]])
def test_invalid_field_names(fields):
    with pytest.raises(ConfigError, match="must be an identifier") as ei:
        build_config(flags={"task": "t", "fields": fields})
    one_line(ei.value)


def test_duplicate_and_empty_fields():
    with pytest.raises(ConfigError, match="distinct"):
        build_config(flags={"task": "t", "fields": "a,a"})
    with pytest.raises(ConfigError, match="at least one field"):
        build_config(flags={"task": "t", "fields": " , "})


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="open_ended_threshold must not exceed max_values"):
        build_config(flags={"task": "t", "max_values": 4, "open_ended_threshold": 5})
    with pytest.raises(ConfigError, match="field_descriptions names unknown fields: zzz"):
        build_config(flags={"task": "t", "field_descriptions": {"zzz": "d"}})


def test_api_base_and_templates():
    assert build_config(flags={"task": "t", "api_base": "http://localhost:8000/v1/"}).api_base == "http://localhost:8000/v1"
    assert build_config(flags={"task": "t", "api_base": "  "}).api_base is None
    with pytest.raises(ConfigError, match="must be an http"):
        build_config(flags={"task": "t", "api_base": "ftp://x"})
    with pytest.raises(ConfigError, match="unknown template step 'nope'"):
        build_config(flags={"task": "t", "templates": {"nope": "f.j2"}})


def test_error_for_key_with_newline_is_one_line():
    with pytest.raises(ConfigError) as ei:
        build_config(flags={"task": "t", "templates": {"a\nb": 1}})
    one_line(ei.value)


def test_non_string_flag_keys():
    with pytest.raises(ConfigError) as ei:
        build_config(flags={"task": "t", 1: 2})
    one_line(ei.value)


def test_config_is_frozen():
    cfg = build_config(flags={"task": "t"})
    with pytest.raises(ValidationError):
        cfg.depth = 5  # type: ignore[misc]


# ---------------------------------------------------------------- redaction
def test_redact_hides_secrets_keeps_env_refs():
    obj = {
        "api_key": "sk-live-123",
        "model": "gpt-4o",
        "router": {
            "model_list": [
                {"model_name": "m", "litellm_params": {"api_key": "os.environ/OPENAI_API_KEY", "model": "x", "aws_secret_access_key": "abc"}},
                {"litellm_params": {"API-KEY": "sk-2", "token": "t0k", "bearer": "b"}},
            ]
        },
        "password": "hunter2",
        "max_tokens": 1500,
    }
    out = redact(obj)
    assert out["api_key"] == "<redacted>"
    assert out["password"] == "<redacted>"
    assert out["model"] == "gpt-4o"
    assert out["max_tokens"] == 1500
    p0 = out["router"]["model_list"][0]["litellm_params"]
    assert p0["api_key"] == "os.environ/OPENAI_API_KEY"
    assert p0["aws_secret_access_key"] == "<redacted>"
    assert p0["model"] == "x"
    p1 = out["router"]["model_list"][1]["litellm_params"]
    assert p1 == {"API-KEY": "<redacted>", "token": "<redacted>", "bearer": "<redacted>"}
    assert obj["api_key"] == "sk-live-123"  # input untouched
    assert "sk-" not in repr(out)


def test_run_config_redacted():
    cfg = build_config(flags={"task": "t", "router": {"model_list": [{"litellm_params": {"api_key": "sk-x"}}]}})
    d = cfg.redacted()
    assert d["router"]["model_list"][0]["litellm_params"]["api_key"] == "<redacted>"
    assert d["task"] == "t"


# ---------------------------------------------------------------- validate_partial
def test_validate_partial_per_key_errors():
    errs = validate_partial({"task": "t", "depth": -1, "size": "lots", "pivots": 12, "bogus": 1, "fields": "a,id", "model": ""})
    assert set(errs) == {"depth", "size", "bogus", "fields"}
    assert errs["depth"].startswith("depth: ")
    assert errs["size"].startswith("size: ")
    assert errs["bogus"] == "unknown config key 'bogus'"
    assert "reserved" in errs["fields"]
    assert all("\n" not in v for v in errs.values())


def test_validate_partial_all_valid_and_blank():
    assert validate_partial({"task": "", "depth": 4, "size": None, "fields": "q,a"}) == {}
    assert validate_partial({}) == {}


def test_validate_partial_empty_task_is_skipped_but_blank_task_is_not():
    assert validate_partial({"task": ""}) == {}
    assert "task" in validate_partial({"task": "   "})


# ---------------------------------------------------------------- property
scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
dict_key = st.text(max_size=8) | st.sampled_from(["a\nb", "question", "system", "api_key", "\u2028"])
value = st.recursive(scalar, lambda c: st.lists(c, max_size=4) | st.dictionaries(dict_key, c, max_size=4), max_leaves=12)
odd_strings = st.sampled_from(["gsm8k", "math", "a,b", "id", "http://x", "x" * 400, "nope.toml", "../../pyproject", "a\x00b"])
keys = st.sampled_from(list(RunConfig.model_fields)) | st.text(max_size=12)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flags=st.dictionaries(keys, value | odd_strings, max_size=8))
@pytest.mark.slow
def test_build_config_arbitrary_flags(flags):
    try:
        cfg = build_config(flags=flags)
    except ConfigError as e:
        one_line(e)
        return
    assert isinstance(cfg, RunConfig)


def test_preset_examples_and_field_patterns_are_resolved_for_the_fields_in_use():
    cfg = build_config(flags={"preset": "gsm8k"})
    assert len(cfg.examples) == 2 and set(cfg.examples[0]) == {"question", "answer"}
    assert set(cfg.field_patterns) == {"question", "answer"}
    import re

    for ex in cfg.examples:  # the shipped examples obey the shipped patterns
        for f, rx in cfg.field_patterns.items():
            assert re.search(rx, " ".join(ex[f].split())), (f, ex[f])
    # other fields: the preset's examples and patterns do not fit, so they are left out
    cfg = build_config(flags={"preset": "gsm8k", "fields": "text"})
    assert cfg.examples == () and cfg.field_patterns == {}


def test_local_model_gets_small_calls_unless_set():
    cfg = build_config(flags={"task": "t"})
    assert (cfg.pivots, cfg.pivots_per_call, cfg.samples_per_call) == (6, 3, 3)
    cfg = build_config(flags={"task": "t", "pivots": 9, "samples_per_call": 5})
    assert (cfg.pivots, cfg.pivots_per_call, cfg.samples_per_call) == (9, 3, 5)
    cfg = build_config(flags={"task": "t", "model": "openai/gpt-4o-mini"})
    assert (cfg.pivots, cfg.pivots_per_call, cfg.samples_per_call) == (12, None, 5)


@pytest.mark.parametrize(
    "flags, words",
    [
        ({"field_patterns": {"nope": "x"}}, "unknown fields"),
        ({"field_patterns": {"text": "("}}, "invalid regular expression"),
        ({"examples": [{"other": "x"}]}, "examples[0]"),
    ],
)
def test_bad_patterns_and_examples_are_one_line_errors(flags, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        build_config(flags={"task": "t", **flags})


def test_small_model_asks_in_small_steps_unless_set():
    from treesynth.core.config import LOCAL_MODEL_DEFAULTS, build_config

    small = build_config(flags={"task": "t", "model": "openai/x", "small_model": True, "pivots": 8})
    assert small.pivots == 8 and all(getattr(small, k) == v for k, v in LOCAL_MODEL_DEFAULTS.items() if k != "pivots")
    big = build_config(flags={"task": "t", "model": "openai/x"})
    assert big.pivots == 12 and big.pivots_per_call is None and big.samples_per_call == 5 and not big.small_model
