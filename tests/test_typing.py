"""The stubs describe the live API: every public name has a stub, and stubbed names exist."""

import ast
from pathlib import Path

import lowlat

STUB = Path(lowlat.__file__).with_name("_core.pyi")


def _stub_names():
    tree = ast.parse(STUB.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names if alias.asname)
    return {n for n in names if not n.startswith("_")}


def test_stubs_ship_with_the_package():
    assert STUB.exists()
    assert STUB.with_name("py.typed").exists()
    assert STUB.with_name("__init__.pyi").exists()


def test_stub_names_match_public_names(impl):
    assert _stub_names() == set(impl.__all__)


def test_stub_methods_exist(impl):
    tree = ast.parse(STUB.read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            cls = getattr(impl, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and (not item.name.startswith("_") or item.name == "__len__"):
                    assert hasattr(cls, item.name), f"{node.name}.{item.name}"
