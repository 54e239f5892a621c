"""Which unikio modules a script runs, read from its imports, and one hash over them.

Snakemake reruns a job when its script changes, not when a module the script
imports does. The workflow gives every script rule a ``code`` param from
:func:`code_hash`, so editing a module reruns exactly the jobs whose scripts
import it, directly or through other modules.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = "unikio"
PACKAGE_DIR = Path(__file__).resolve().parent


def direct_imports(source: str, in_package: bool) -> set[str]:
    """Names of unikio modules that source imports (``__init__`` for the package itself).

    ``in_package``: source is a module of the package, so relative imports count.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE:
                    found.add("__init__")
                    found.update(parts[1:2])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.split(".")[0] == PACKAGE:
                base = node.module.split(".")[1:2]
            elif node.level == 1 and in_package:
                base = node.module.split(".")[:1] if node.module else []
            else:
                continue
            found.add("__init__")
            if base:
                found.update(base)
            else:  # `from unikio import a, b` / `from . import a, b`
                found.update(alias.name for alias in node.names)
    return found


def modules_of(script: Path, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Every package module the script imports, transitively, sorted."""
    seen: set[str] = set()
    todo = sorted(direct_imports(Path(script).read_text(encoding="utf-8"), in_package=False))
    while todo:
        name = todo.pop()
        path = package_dir / f"{name}.py"
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        todo += sorted(direct_imports(path.read_text(encoding="utf-8"), in_package=True) - seen)
    return [package_dir / f"{name}.py" for name in sorted(seen)]


def code_hash(script: Path, package_dir: Path = PACKAGE_DIR) -> str:
    """A short hash over the names and the code of the modules the script imports.

    The code is the module's syntax tree, so an edit of comments or layout
    alone reruns nothing.
    """
    h = hashlib.sha256()
    for path in modules_of(script, package_dir):
        tree = ast.dump(ast.parse(path.read_text(encoding="utf-8")))
        h.update(path.name.encode() + b"\0" + tree.encode() + b"\0")
    return h.hexdigest()[:16]
