"""The stubs describe the live API: every public name has a stub, and stubbed names exist."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lowlat
from lowlat._backend import TOP_LEVEL_CONCEPTS

PACKAGE = Path(lowlat.__file__).parent
STUBS = [PACKAGE.joinpath(*concept.split(".")[1:], "_c.pyi") for concept in TOP_LEVEL_CONCEPTS]


def _stub_classes():
    for stub in STUBS:
        for node in ast.parse(stub.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                yield node


def _stub_names():
    names = set()
    for stub in STUBS:
        for node in ast.parse(stub.read_text()).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.ImportFrom):
                names.update(alias.asname or alias.name for alias in node.names if alias.asname)
    return {n for n in names if not n.startswith("_")}


def test_stubs_ship_with_the_package():
    for stub in STUBS:
        assert stub.exists(), stub
        assert stub.with_name("__init__.pyi").exists(), stub
    assert PACKAGE.joinpath("py.typed").exists()
    assert PACKAGE.joinpath("__init__.pyi").exists()


def test_stub_names_match_public_names(impl):
    assert _stub_names() == set(impl.__all__)


def test_stub_methods_exist(impl):
    for node in _stub_classes():
        cls = getattr(impl, node.name)
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and (not item.name.startswith("_") or item.name == "__len__"):
                assert hasattr(cls, item.name), f"{node.name}.{item.name}"


def _readme_blocks():
    readme = Path(__file__).resolve().parent.parent / "README.md"
    if not readme.exists():
        return []
    return re.findall(r"^```python\n(.*?)^```", readme.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_readme_uses_every_public_name():
    blocks = _readme_blocks()
    if not blocks:
        pytest.skip("needs the source tree's README.md")
    text = "\n".join(blocks)
    missing = [name for name in lowlat.__all__ if not re.search(rf"\b{name}\b", text)]
    assert missing == [], f"public names the README never shows: {missing}"


def _mypy(tmp_path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run mypy on ``args`` as a user's checker would see lowlat: in-tree, the source tree (not a
    wheel installed beside it); installed, the package it finds itself."""
    import site

    package_root = PACKAGE.resolve().parent
    env = dict(os.environ)
    if package_root not in {Path(p).resolve() for p in site.getsitepackages()}:
        env["MYPYPATH"] = str(package_root)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
         "--python-executable", sys.executable, "--ignore-missing-imports", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout,
    )


def test_readme_examples_type_check(tmp_path):
    """mypy accepts every README example against the shipped stubs (as a user's checker would)."""
    pytest.importorskip("mypy")
    blocks = _readme_blocks()
    if not blocks:
        pytest.skip("needs the source tree's README.md")
    files = []
    for number, code in enumerate(blocks):
        path = tmp_path / f"readme_block_{number}.py"
        path.write_text(code, encoding="utf-8")
        files.append(str(path))
    done = _mypy(tmp_path, "--follow-imports=silent", "--check-untyped-defs", *files)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_package_type_checks(tmp_path):
    """mypy finds nothing in the package's own code: the pure twins, the plain-Python parts and
    the benchmarks (the compiled halves are seen through their stubs)."""
    pytest.importorskip("mypy")
    # By module name, not by path: a path inside site-packages would make mypy take all of
    # site-packages for the user's own code.
    done = _mypy(tmp_path, "-p", "lowlat", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    checked = re.search(r"(\d+) source files", done.stdout)
    assert checked and int(checked.group(1)) >= 50, done.stdout  # the whole package, not an empty match
