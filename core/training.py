"""Training formats: a dataset row as a chat conversation (OpenAI / TRL ``messages``) or an Alpaca
record (instruction / input / output). Pure functions; the writers are in core/export.py.

Which fields make the prompt and which the response comes from the preset (``prompt_fields``,
``response_fields``), the export's flags, or a default: every field but the last is the prompt, the
last is the response. A prompt or response of one field is that field's text; of several, each field's
text under its name (``question: ...``), so nothing is lost and the model sees which is which."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Roles:
    prompt: tuple[str, ...]
    response: tuple[str, ...]
    system: str | None = None


def roles(
    fields: Sequence[str], prompt: Sequence[str] = (), response: Sequence[str] = (), system: str | None = None, *, strict: bool = False
) -> Roles:
    """The prompt and response fields of a dataset with ``fields``. ``strict`` (fields the user named on
    the command line): a field that is not in the data, or in both roles, is a ``ConfigError``; otherwise
    (a preset's hints, which may not fit fields the user changed) they fall back to the default."""
    fields = tuple(fields)
    prompt, response = tuple(prompt), tuple(response)
    problem = _problem(fields, prompt, response)
    if problem and strict:
        raise ConfigError(problem)
    if problem or not (prompt or response):
        if len(fields) < 2:
            raise ConfigError(f"a training export needs a prompt and a response: the data has one field ({', '.join(fields)}); "
                              "give --prompt-fields and --response-fields")
        prompt, response = fields[:-1], fields[-1:]
    elif not prompt:
        prompt = tuple(f for f in fields if f not in response)
    elif not response:
        response = tuple(f for f in fields if f not in prompt)
    if not prompt or not response:
        raise ConfigError("a training export needs at least one prompt field and one response field")
    return Roles(prompt, response, system.strip() if system and system.strip() else None)


def _problem(fields: tuple[str, ...], prompt: tuple[str, ...], response: tuple[str, ...]) -> str | None:
    unknown = [f for f in (*prompt, *response) if f not in fields]
    if unknown:
        return f"unknown field(s) {', '.join(unknown)} for the export (the data has {', '.join(fields)})"
    both = set(prompt) & set(response)
    if both:
        return f"field(s) {', '.join(sorted(both))} cannot be both prompt and response"
    return None


def _text(row: dict[str, Any], names: tuple[str, ...]) -> str:
    if len(names) == 1:
        return str(row.get(names[0], ""))
    return "\n\n".join(f"{n}: {row.get(n, '')}" for n in names if str(row.get(n, "")).strip())


def chat_record(row: dict[str, Any], r: Roles) -> dict[str, Any]:
    """``{"messages": [system?, user, assistant]}``, the conversational format of OpenAI fine-tuning and TRL's SFTTrainer."""
    messages = [{"role": "system", "content": r.system}] if r.system else []
    messages.append({"role": "user", "content": _text(row, r.prompt)})
    messages.append({"role": "assistant", "content": _text(row, r.response)})
    return {"messages": messages}


def alpaca_record(row: dict[str, Any], r: Roles) -> dict[str, Any]:
    """``{"instruction", "input", "output"}``: the first prompt field is the instruction, the others the input."""
    return {"instruction": str(row.get(r.prompt[0], "")), "input": _text(row, r.prompt[1:]) if len(r.prompt) > 1 else "",
            "output": _text(row, r.response)}
