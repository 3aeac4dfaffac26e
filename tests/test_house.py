"""The package's layout rules: one concept per module, dependencies one way.

* no import cycle anywhere in ``kitsession_wsgi`` (read statically, imports under
  ``TYPE_CHECKING`` and inside functions included);
* the manager's parts (every module ``manager.py`` imports) never import the manager,
  and no module reaches into ``manager._x``: the manager builds its parts and
  delegates, nothing calls back through it;
* the adapters (the WSGI middleware, the Flask extension) touch no underscore name
  that only the core's classes define: they use the core's public names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kitsession_wsgi

PACKAGE = Path(kitsession_wsgi.__file__).resolve().parent
ROOT = "kitsession_wsgi"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([ROOT, *parts])


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imported_modules(name: str, source: str) -> set[str]:
    """The package's modules ``source`` (the module ``name``) imports, wherever the import stands."""
    found: set[str] = set()
    package = name if is_package(name) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # ``from . import signals`` imports the module ``signals``; ``from .x import y``, ``.x``
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES]
            candidates = submodules if len(submodules) == len(node.names) else [target, *submodules]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in MODULES:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name and candidate.startswith(ROOT):
                found.add(candidate)
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {name: imported_modules(name, path.read_text(encoding="utf-8")) for name, path in MODULES.items()}
    # Importing ``a.b`` runs ``a/__init__.py`` first, but that edge is the interpreter's,
    # not a dependency of the importing module: it is not counted.
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_check_sees_a_cycle_through_type_checking() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .manager import SessionManager\n"
    assert imported_modules("kitsession_wsgi.session", source) == {"kitsession_wsgi.manager"}


def test_no_import_cycle_in_the_package() -> None:
    assert cycles(import_graph()) == []


def manager_parts(graph: dict[str, set[str]]) -> set[str]:
    """Every module ``manager.py`` imports, directly or not."""
    seen: set[str] = set()
    todo = [f"{ROOT}.manager"]
    while todo:
        for other in graph[todo.pop()]:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def test_no_part_of_the_manager_imports_it() -> None:
    graph = import_graph()
    parts = manager_parts(graph)
    assert {f"{ROOT}._loader", f"{ROOT}._writer", f"{ROOT}._lineage", f"{ROOT}._remover"} <= parts
    assert sorted(part for part in parts if f"{ROOT}.manager" in graph[part]) == []


def test_no_part_holds_the_manager() -> None:
    """At run time too: the parts the manager builds keep no reference to it (the signals'
    sender, an identity, is held by the events object alone)."""
    from kitsession_wsgi import MemoryStore, SessionManager
    from kitsession_wsgi._events import SessionEvents

    manager = SessionManager(MemoryStore(), keys="k")
    seen: set[int] = set()
    holders: list[str] = []

    def walk(owner: object, path: str) -> None:
        if id(owner) in seen or isinstance(owner, SessionEvents):
            return
        seen.add(id(owner))
        for name in getattr(owner, "__slots__", ()) or vars(owner):
            value = getattr(owner, name, None)
            if value is manager:
                holders.append(f"{path}.{name}")
            elif type(value).__module__.startswith("kitsession_wsgi._"):
                walk(value, f"{path}.{name}")

    for name, part in vars(manager).items():
        walk(part, name)
    assert holders == []


def reaches_into_manager(source: str) -> list[str]:
    """``manager._x`` (or ``self.manager._x``) anywhere in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if name == "manager":
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_manager_check_sees_a_reach() -> None:
    assert reaches_into_manager("x = self.manager._cookie\nmanager.release(s)\n") == ["1: self.manager._cookie"]


@pytest.mark.parametrize("name", sorted(set(MODULES) - {f"{ROOT}.manager"}))
def test_no_module_reaches_into_the_manager(name: str) -> None:
    assert reaches_into_manager(MODULES[name].read_text(encoding="utf-8")) == []


def is_adapter(name: str) -> bool:
    """The WSGI middleware and the Flask extension, and the HTTP details they share."""
    short = name[len(ROOT) + 1:]
    return short.split(".")[0] in {"wsgi", "flask", "_http"} or short.startswith(("flask_", "_wsgi_"))


def underscore_names_defined(source: str) -> set[str]:
    """The single-underscore names classes in ``source`` define: methods, ``self._x``, slots."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(inner.name)
            elif isinstance(inner, ast.Attribute) and isinstance(inner.ctx, ast.Store):
                names.add(inner.attr)
            elif isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                names.add(inner.value)  # __slots__ entries
            elif isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                names.add(inner.id)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def core_only_names() -> set[str]:
    core: set[str] = set()
    adapters: set[str] = set()
    for name, path in MODULES.items():
        defined = underscore_names_defined(path.read_text(encoding="utf-8"))
        (adapters if is_adapter(name) else core).update(defined)
    return core - adapters


def test_core_only_names_are_found() -> None:
    names = core_only_names()
    assert {"_data", "_lock_token", "_destroyed", "_anonymous", "_maybe_changed", "_loaded_text"} <= names


@pytest.mark.parametrize("name", sorted(name for name in MODULES if is_adapter(name)))
def test_adapters_touch_only_public_names_of_the_core(name: str) -> None:
    core = core_only_names()
    touched = [
        f"{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr in core
    ]
    assert touched == [], "use the core's public names (kitsession_wsgi._lifecycle.RequestLifecycle):\n" + "\n".join(touched)
