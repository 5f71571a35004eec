"""``lint-imports`` for this layout. The folders (core/, tui/, ...) become ``treesynth.*`` only at install
time, under ``treesynth`` itself (api/: the Python API), so the contracts name those subpackages as
root packages. grimp takes a root package only when its parent is a namespace package, and ``treesynth``
is a regular one; this runs import-linter with ``treesynth`` found as a namespace (nothing is imported
from it: grimp reads files), and changes nothing else. Same arguments and exit code as ``lint-imports``."""

import sys
from importlib.machinery import ModuleSpec


class _TopAsNamespace:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "treesynth":
            return None
        spec = ModuleSpec("treesynth", None, is_package=True)
        spec.submodule_search_locations = []
        return spec


sys.meta_path.insert(0, _TopAsNamespace())

from importlinter.cli import lint_imports_command  # noqa: E402

sys.exit(lint_imports_command())
