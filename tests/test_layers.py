"""The layers contract of resolver/ (issue #16): imports go only downward.

``LAYERS`` below is the one definition of the order, lowest first (README's Layout section
describes it). A module may import its own layer and the layers below it, never one above. Every
module of resolver/ is read: Python ``import``/``from`` statements anywhere in the file (inside
functions too), and in the compiled ``.pyx``/``.pxd`` sources ``cimport`` and ``import`` as well.
A module no layer names fails the test, so a new module is placed on purpose. README's Layout
table must name every module once, in a row of its package and of its layer, rows in the
layers' order, so that the table cannot drift from the code.
"""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "resolver"

#: Lowest first. A name ending in ".*" covers a package and every module in it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("resolver", "resolver.clock", "resolver.ede", "resolver.errors",
                    "resolver.sockets", "resolver.status", "resolver.wire")),
    ("outgoing", ("resolver.outgoing", "resolver.nft")),
    ("dnssec", ("resolver.dnssec", "resolver.dnssec.*")),
    ("config", ("resolver.config", "resolver.config.*")),
    ("forensic", ("resolver.forensic", "resolver.forensic.*")),
    ("resolve", ("resolver.resolve", "resolver.resolve.*")),
    ("frontend", ("resolver.frontend", "resolver.frontend.*")),
    ("monitor", ("resolver.monitor", "resolver.monitor.*")),
    ("ops", ("resolver.ops", "resolver.ops.*")),
    ("application", ("resolver.service", "resolver.preflight", "resolver.checkzone",
                     "resolver.configcheck", "resolver.policycli", "resolver.learn",
                     "resolver.cli")),
)


def layer_of(module: str) -> int | None:
    """The index in ``LAYERS`` of ``module`` (a dotted name), None when no layer names it."""
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if module == name or (name.endswith(".*") and module.startswith(name[:-1])):
                return index
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _known(name: str) -> bool:
    """Whether ``name`` is a module or package of resolver/ (source, not only compiled)."""
    base = ROOT.joinpath(*name.split("."))
    return base.is_dir() or any(base.with_suffix(s).exists() for s in (".py", ".pyx", ".pxd"))


def _targets(module: str, names: list[str]) -> list[str]:
    """What ``from module import names`` imports: a submodule per name that is one, else the
    module itself."""
    found = []
    for name in names:
        sub = f"{module}.{name}"
        found.append(sub if _known(sub) else module)
    return found


def _ours(names: list[str]) -> list[str]:
    """The modules of resolver/ among ``names``, each once, in order."""
    return list(dict.fromkeys(n for n in names if n == "resolver" or n.startswith("resolver.")))


def _absolute(importer: str, is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if level > 1:
        base = base[:-(level - 1)]
    return ".".join(base + ([module] if module else []))


def python_imports(importer: str, text: str, is_package: bool = False) -> list[str]:
    """Every module of resolver/ that Python source ``text`` imports."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = _absolute(importer, is_package, node.level, node.module)
            found += _targets(module, [alias.name for alias in node.names])
    return _ours(found)


_STRINGS = re.compile(r'""".*?"""|\'\'\'.*?\'\'\'', re.S)
_FROM = re.compile(r"^[ \t]*from[ \t]+([\w.]+)[ \t]+c?import[ \t]+(\([^)]*\)|[^\n#]*)", re.M)
_IMPORT = re.compile(r"^[ \t]*c?import[ \t]+([^\n#]*)", re.M)


def cython_imports(text: str) -> list[str]:
    """Every module of resolver/ that Cython source ``text`` (.pyx, .pxd) imports or cimports."""
    text = _STRINGS.sub("", text)
    found = []
    for match in _FROM.finditer(text):
        names = [n.split(" as ")[0].strip() for n in match.group(2).strip("()").split(",")]
        found += _targets(match.group(1), [n for n in names if n])
    for match in _IMPORT.finditer(text):
        found += [n.split(" as ")[0].strip() for n in match.group(1).split(",")]
    return _ours(found)


def upward(importer: str, imported: list[str]) -> list[str]:
    """The contract's violations: ``importer`` unplaced, or importing above its layer (or an
    unplaced module)."""
    own = layer_of(importer)
    if own is None:
        return [f"{importer} is in no layer of tests/test_layers.py LAYERS"]
    problems = []
    for name in imported:
        theirs = layer_of(name)
        if theirs is None:
            problems.append(f"{importer} imports {name}, which is in no layer")
        elif theirs > own:
            problems.append(f"{importer} ({LAYERS[own][0]}) imports {name} "
                            f"({LAYERS[theirs][0]}), a layer above")
    return problems


def imports_of(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix == ".py":
        return python_imports(module_name(path), text, path.name == "__init__.py")
    return cython_imports(text)


SOURCES = sorted(p for suffix in ("*.py", "*.pyx", "*.pxd") for p in PACKAGE.rglob(suffix))


def test_sources_are_found():
    names = {module_name(p) for p in SOURCES}
    assert {"resolver.frontend.resolution", "resolver.frontend.answers",
            "resolver.frontend.pipeline", "resolver.frontend.listeners",
            "resolver.frontend._fastpath", "resolver.resolve._fastcache", "resolver.resolve._lru",
            "resolver.dnssec.validator"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_go_down(path):
    assert upward(module_name(path), imports_of(path)) == []


def test_an_upward_python_import_fails():
    text = "import os\n\ndef late():\n    from resolver.frontend import pipeline\n"
    imported = python_imports("resolver.ede", text)
    assert imported == ["resolver.frontend.pipeline"]
    assert upward("resolver.ede", imported) == [
        "resolver.ede (foundation) imports resolver.frontend.pipeline (frontend), a layer above"]
    # ``from package import name``: the submodule when the name is one, else the package.
    assert python_imports("resolver.cli", "from resolver import ede, __version__\n") == [
        "resolver.ede", "resolver"]
    # A relative import is resolved against the importer's package.
    assert python_imports("resolver.dnssec.nsec", "from ..resolve.iterator import Iterator\n") == [
        "resolver.resolve.iterator"]
    assert upward("resolver.dnssec.nsec", ["resolver.resolve.iterator"]) != []


def test_an_upward_cython_import_fails():
    text = ('"""from resolver.frontend.pipeline import docstrings are not imports"""\n'
            "from libc.string cimport memcpy\n"
            "from resolver.frontend.admission cimport Admission\n"
            "from resolver.resolve.iterator import (Iterator,\n    Settings)\n"
            "cimport resolver.frontend.pipeline as s\n")
    imported = cython_imports(text)
    assert imported == ["resolver.frontend.admission", "resolver.resolve.iterator",
                        "resolver.frontend.pipeline"]
    assert upward("resolver.dnssec.verify", imported) == [
        f"resolver.dnssec.verify (dnssec) imports {name} ({layer}), a layer above"
        for name, layer in (("resolver.frontend.admission", "frontend"),
                            ("resolver.resolve.iterator", "resolve"),
                            ("resolver.frontend.pipeline", "frontend"))]
    assert upward("resolver.frontend.pipeline", imported) == []


def test_an_unplaced_module_fails():
    assert upward("resolver.newthing", []) != []
    assert upward("resolver.cli", ["resolver.newthing"]) != []


def layout_rows() -> list[tuple[str, str, set[str]]]:
    """README's Layout table: (layer, package path, the names in backticks of its modules
    cell) per row, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    table = section.split("\n| layer | path |", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        layer, path, modules = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        rows.append((layer, re.search(r"`([^`]+)`", path)[1],
                     set(re.findall(r"`(\w+)`", modules))))
    return rows


def layout_problems(rows: list[tuple[str, str, set[str]]]) -> list[str]:
    """How ``rows`` (README's Layout table) differ from the code: rows out of the layers' order,
    a module of resolver/ named in no row of its package or in several, or in a row of another
    layer than ``LAYERS`` gives it."""
    order = [name for name, _ in LAYERS]
    layers = [layer for layer, _, _ in rows]
    problems = [] if layers == sorted(layers, key=order.index) else ["rows out of layer order"]
    for module in sorted({module_name(p) for p in SOURCES if p.name != "__init__.py"}):
        package, _, stem = module.rpartition(".")
        path = package.replace(".", "/") + "/"
        naming = [layer for layer, where, names in rows if where == path and stem in names]
        if len(naming) != 1:
            problems.append(f"{module}: named in {len(naming)} rows of {path}")
        elif naming[0] != LAYERS[layer_of(module)][0]:
            problems.append(f"{module}: in a {naming[0]} row, LAYERS has it in "
                            f"{LAYERS[layer_of(module)][0]}")
    return problems


def test_readme_layout_names_every_module_once_in_its_layer():
    assert layout_problems(layout_rows()) == []


def test_readme_layout_check_fails_on_a_missing_or_misplaced_module():
    rows = layout_rows()
    without_wire = [(layer, path, names - {"wire"}) for layer, path, names in rows]
    assert layout_problems(without_wire) == ["resolver.wire: named in 0 rows of resolver/"]
    twice = rows + [("application", "resolver/", {"wire"})]
    assert layout_problems(twice) == ["resolver.wire: named in 2 rows of resolver/"]
    moved = [(layer if path != "resolver/config/" else "forensic", path, names)
             for layer, path, names in rows]
    assert "resolver.config.parse: in a forensic row, LAYERS has it in config" in \
        layout_problems(moved)
    assert layout_problems(rows[::-1])[0] == "rows out of layer order"
