"""Prompt templates and presets shipped with treesynth (data, not code)."""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
