"""The layout shows the architecture (issue 28, item 5): the import-linter contracts in pyproject.toml
name every module of patentcpc and every model kind, `lint-imports` keeps them, and no module loads
another by a string except the registry (a kind's declared "module:attr" strings)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "patentcpc"

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


def _contracts() -> list[dict]:
    with open(REPO / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["importlinter"]["contracts"]


def _modules() -> list[str]:
    """Every module under src/patentcpc (packages by their own name), the root package excepted."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("patentcpc", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1:
            names.append(".".join(parts))
    return names


def _layer_modules(contract: dict) -> list[str]:
    """The modules a layers contract names (with its containers' prefix)."""
    names = []
    for layer in contract["layers"]:
        for name in re.split(r"[|:]", layer):
            name = name.strip().strip("()")
            for container in contract.get("containers") or [""]:
                names.append(f"{container}.{name}" if container else name)
    return names


def _covered(module: str, names: list[str]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def test_every_module_is_in_a_layer():
    layered = [n for c in _contracts() if c["type"] == "layers" for n in _layer_modules(c)]
    missing = [m for m in _modules() if not _covered(m, layered)]
    assert not missing, f"modules in no import-linter layer (pyproject.toml): {missing}"
    modules = set(_modules())
    stale = [n for n in layered if n not in modules]
    assert not stale, f"layers name modules that do not exist: {stale}"


def test_every_kind_is_in_the_independence_contract():
    kinds = sorted(p.name for p in (PACKAGE / "kinds").iterdir() if (p / "__init__.py").exists())
    assert len(kinds) >= 8, kinds
    independent = [c for c in _contracts() if c["type"] == "independence"]
    named = {m for c in independent for m in c["modules"]}
    expected = {f"patentcpc.kinds.{k}" for k in kinds}
    assert named == expected, f"not in an independence contract: {sorted(expected - named)}; " \
                              f"no such kind: {sorted(named - expected)}"


def test_lint_imports_keeps_the_contracts():
    pytest.importorskip("importlinter")
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *sys.path])}
    proc = subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout, proc.stdout[-3000:]


# Loading a module by a string: only the registry does it (a kind's declared "module:attr" strings).
# The package's own lazy attributes (patentcpc.load_model, ...) stay a name -> module table: a plain
# import in patentcpc/__init__.py would make every module that reads patentcpc.__version__ (io,
# models.artifact, the CLI) depend on the API in the import graph.
STRING_LOADERS = {"import_module", "__import__", "spec_from_file_location", "load_module", "exec_module"}
MAY_LOAD_BY_STRING = {"registry.py", "__init__.py"}
MODULE_ATTR = re.compile(r"^patentcpc(\.\w+)+:\w+$")


def _kind_declaration(rel: Path) -> bool:
    return len(rel.parts) == 3 and rel.parts[0] == "kinds" and rel.name == "__init__.py"


def test_no_module_is_loaded_by_a_string_outside_the_registry():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name in STRING_LOADERS and str(rel) not in MAY_LOAD_BY_STRING:
                    found.append(f"{rel}:{node.lineno} {name}()")
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_ATTR.match(node.value)
                  and str(rel) != "registry.py" and not _kind_declaration(rel)):
                found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not found, found
