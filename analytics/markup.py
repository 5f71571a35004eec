"""Strings for the report page: HTML-escaping for plotly's strings (plotly renders a small subset of
HTML in hover texts, labels and titles), JSON that is safe inside a ``<script>`` element, clipping
and wrapping of long texts, and number formatting for the tables (see ``html`` for the whole
escaping scheme)."""

from __future__ import annotations

import html as _html
import math
import textwrap
from typing import Any

HOVER_CHARS = 280


def esc(s: Any) -> str:
    """HTML-escape for plotly strings (plotly renders a subset of HTML in them)."""
    return _html.escape(str(s), quote=False)


def clip(s: str, n: int) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1].rstrip() + "…"


def wrap_esc(s: str, n: int = HOVER_CHARS, width: int = 72) -> str:
    """Collapse whitespace, truncate, wrap, escape each line, join with <br> (escaping after
    truncation, so no entity is ever cut)."""
    return "<br>".join(esc(line) for line in textwrap.wrap(clip(s, n), width) or [""])


def json_for_script(obj: Any) -> str:
    """JSON that is safe inside a <script type=application/json> element."""
    import orjson

    b = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    return b.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026").decode("utf-8")


def fmt(v: Any, kind: str) -> str:
    """A table cell: ``kind`` is "int", "pct" or "f<digits>"; None, NaN and infinity are "–"."""
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "–"
    if kind == "int":
        return f"{int(round(v)):,}"
    if kind == "pct":
        return f"{100 * v:.2f}%"
    if kind.startswith("f"):
        return f"{v:,.{int(kind[1:])}f}"
    return str(v)
