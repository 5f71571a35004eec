"""Errors of the analytics front end: TreesynthError subclasses, so the CLI prints one line and exits 2."""

from __future__ import annotations

from treesynth.core.errors import EmbedderError, TreesynthError

__all__ = ["EmbedderError", "InputError", "ReportError"]


class ReportError(TreesynthError):
    """A report cannot be built (bad input, no text field, empty dataset, unwritable output)."""


class InputError(ReportError):
    """An input file or run directory that is missing, unreadable or has no usable text."""
