"""The import layers of docs/design.md, checked on the installed package's source.

    units / errors / records  <-  model  <-  store / kernel  <-  collect  <-  diagnose
        <-  doctor / fix / watch / lab  <-  cli

A module may import its own piece and any piece of a lower layer, never one of
its own layer or above; diagnose, whose rules are pure, imports neither kernel
nor collect. Inside watch, its presentation/ and serving/ subpackages build
on its sampling and history modules, never the reverse, nor on each other.
Imports inside functions count like any other: a
function-level import is not a way around a layer, nor around a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import halfopen

PACKAGE = Path(halfopen.__file__).resolve().parent

# top-level piece -> layer; a higher layer may import a lower one
LAYERS = {
    "units": 0,
    "errors": 0,
    "records": 0,
    "fsio": 1,  # files written as root; errors below it, model beside it
    "model": 1,
    "store": 2,  # snapshot files: model records to and from disk
    "kernel": 2,
    "collect": 3,
    "diagnose": 4,
    "doctor": 5,  # the live run: collect then diagnose (halfopen.doctor.examine)
    "fix": 5,
    "watch": 5,
    "lab": 5,
    "cli": 6,
    "__init__": 0,  # halfopen/__init__.py: the version only
    "__main__": 7,
}

# lower layers a piece still may not import
FORBIDDEN = {"diagnose": {"kernel", "collect", "store"}}

# Known breaches, each to be removed by the change that fixes it; the test
# fails when an entry is no longer needed, so the list only shrinks.
KNOWN: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in `path`, at any depth."""
    name = _module_name(path)
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import name`: the name may be a submodule; _resolve
            # and _piece trim it back to the module it lives in
            found.extend((node.lineno, f"{mod}.{alias.name}") for alias in node.names)
    return [(line, mod) for line, mod in found if mod == "halfopen" or mod.startswith("halfopen.")]


def _piece(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_piece_has_a_layer():
    pieces = {_piece(_module_name(p)) for p in _sources()}
    assert pieces - set(LAYERS) == set()


def test_imports_run_one_way():
    modules = _known_modules()
    breaches = set()
    lines = []
    for path in _sources():
        src = _module_name(path)
        src_piece = _piece(src)
        for line, name in _imports(path):
            target = _resolve(name, modules) or name
            dst_piece = _piece(target)
            if dst_piece == src_piece:
                continue
            if LAYERS[dst_piece] >= LAYERS[src_piece] or dst_piece in FORBIDDEN.get(src_piece, ()):
                breaches.add((src, target))
                if (src, target) not in KNOWN:
                    lines.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {src_piece} imports {target}")
    assert lines == [], "imports against the layers:\n" + "\n".join(lines)
    assert KNOWN - breaches == set(), "fixed breaches still listed in KNOWN"


# watch's subpackages that stand apart from its sampling and history (and each other)
APART = ("halfopen.watch.presentation", "halfopen.watch.serving")


def _apart(module: str) -> str | None:
    """The subpackage of APART that holds `module`, if any."""
    return next((p for p in APART if module == p or module.startswith(p + ".")), None)


def test_watch_sampling_stands_apart():
    modules = _known_modules()
    lines = []
    for path in _sources():
        src = _module_name(path)
        if _piece(src) != "watch":
            continue
        for line, name in _imports(path):
            dst = _apart(_resolve(name, modules) or name)
            if dst is not None and dst != _apart(src):
                lines.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {src} imports {dst}")
    assert lines == [], "watch's sampling and history import what shows or serves them:\n" + "\n".join(lines)


def _known_modules() -> set[str]:
    return {_module_name(p) for p in _sources()}


def _resolve(target: str, modules: set[str]) -> str | None:
    """The module `target` names (`from pkg import name` may name a function)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def test_no_import_cycles():
    modules = _known_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in _sources():
        src = _module_name(path)
        for _, target in _imports(path):
            dst = _resolve(target, modules)
            # a module importing its own package's __init__ is the normal
            # `from . import sibling`; only edges between modules count
            if dst and dst != src and not src.startswith(dst + "."):
                graph[src].add(dst)
    cycles = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [])
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


# what reads or changes the system; model records and diagnose's rules use none of it
IO_MODULES = {"os", "io", "pathlib", "shutil", "socket", "sqlite3", "subprocess", "fcntl", "ctypes"}
# the filter parser names ports as ss does: getservbyname() reads /etc/services
IO_ALLOWED = {("halfopen.model.filter_values", "socket")}


def test_model_and_rules_do_no_io():
    found = []
    for path in _sources():
        module = _module_name(path)
        if _piece(module) not in ("model", "diagnose"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module.split(".")[0]]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
                names = ["open()"]
            found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {n}"
                      for n in names if (n in IO_MODULES or n == "open()") and (module, n) not in IO_ALLOWED]
    assert found == [], "I/O in model or diagnose:\n" + "\n".join(found)
