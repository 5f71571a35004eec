"""The library behind ``import treesynth`` (the names are re-exported there; see its docstring)."""

from .dataset import Dataset, TreeView
from .runs import Run, balance, config, extend, generate, make_baseline, open_run, report, resume

__all__ = ["Dataset", "Run", "TreeView", "balance", "config", "extend", "generate", "make_baseline", "open_run", "report", "resume"]
