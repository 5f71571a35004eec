"""Errors of the analytics front end: TreesynthError subclasses, so the CLI prints one line and exits 2."""

from __future__ import annotations

from treesynth.core.errors import TreesynthError


class ReportError(TreesynthError):
    """A report cannot be built (bad input, no text field, empty dataset, unwritable output)."""


class InputError(ReportError):
    """An input file or run directory that is missing, unreadable or has no usable text."""


class EmbedderError(ReportError):
    """The embedding model cannot be found or loaded."""
