"""The import rules of the layers (README, "Architecture"): core → kit → adapters.

- `wscore` is sans-I/O: importing any of its modules loads no event loop, socket, TLS, selector or
  thread module, and it has no `async def`, `await`, `async for` or `async with` at all;
- `_wscore_kit` imports `wscore` and no I/O library at module level;
- an adapter imports public names only: no module or name of `wscore` that starts with `_`, and no
  private module or name of another adapter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "wscore"
KIT = ROOT / "adapters" / "_wscore_kit"
ADAPTERS = sorted(p for p in (ROOT / "adapters").iterdir() if p.name.startswith("wscore_"))
IO_MODULES = ("asyncio", "trio", "anyio", "socket", "ssl", "selectors", "uvloop", "sniffio")

_PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
assert package.__file__.startswith(sys.argv[2]), package.__file__
for module in pkgutil.iter_modules(package.__path__):
    importlib.import_module(sys.argv[1] + "." + module.name)
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_by(package: str, path: Path) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-E", "-c", _PROBE, package, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'adapters'}"},
    ).stdout
    return set(json.loads(out))


def _top(module: str) -> str:
    return module.split(".", maxsplit=1)[0].lstrip("_")


def test_the_core_loads_no_io_or_thread_module() -> None:
    loaded = _loaded_by("wscore", CORE)
    assert {"wscore.connection", "wscore.client", "wscore.server"} <= loaded  # it really ran
    assert sorted(m for m in loaded if _top(m) in (*IO_MODULES, "threading")) == []


def test_the_kit_loads_no_io_library() -> None:
    loaded = _loaded_by("_wscore_kit", KIT)
    assert {"_wscore_kit.api", "_wscore_kit.driver"} <= loaded
    assert sorted(m for m in loaded if _top(m) in IO_MODULES) == []


def _trees(root: Path) -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(root.rglob("*.py"))]


def test_the_core_has_no_async_code() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path, tree in _trees(CORE)
        for node in ast.walk(tree)
        if isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith))
    ]
    assert found == []


def _imports(tree: ast.Module) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) for every import, at any depth (late imports too)."""
    result: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            result.extend((alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            result.extend((node.module, alias.name, node.lineno) for alias in node.names)
    return result


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda p: p.name)
def test_an_adapter_imports_only_public_names(adapter: Path) -> None:
    others = {p.name for p in ADAPTERS} - {adapter.name}
    bad = []
    for path, tree in _trees(adapter):
        for module, name, line in _imports(tree):
            parts = module.split(".")
            where = f"{path.relative_to(ROOT)}:{line} {module}{'' if name is None else ':' + name}"
            if parts[0] in ("wscore", *others) and (
                any(part.startswith("_") for part in parts[1:]) or (name or "").startswith("_")
            ):
                bad.append(where)
    assert bad == []


def test_the_kit_imports_no_adapter() -> None:
    adapters = {p.name for p in ADAPTERS}
    bad = [
        f"{path.relative_to(ROOT)}:{line} {module}"
        for path, tree in _trees(KIT)
        for module, _, line in _imports(tree)
        if module.split(".")[0] in adapters or (module.startswith("wscore.") and "._" in "." + module)
    ]
    assert bad == []


_CORE_OBJECTS = {"conn", "_conn", "core"}


@pytest.mark.parametrize("package", [*ADAPTERS, KIT], ids=lambda p: p.name)
def test_no_private_attribute_of_a_core_object_is_read(package: Path) -> None:
    """`conn._x`, `self._conn._x`, `ws.core._x`: the driver fast path is public (`wscore.Connection`)."""
    bad = [
        f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}"
        for path, tree in _trees(package)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and (
            (isinstance(node.value, ast.Name) and node.value.id in _CORE_OBJECTS)
            or (isinstance(node.value, ast.Attribute) and node.value.attr in _CORE_OBJECTS)
        )
    ]
    assert bad == []
