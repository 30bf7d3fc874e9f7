"""The two backends expose one interface: names, signatures, docstrings, errors; and the build."""

import inspect
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import load_backend

ROOT = Path(__file__).resolve().parent.parent
TESTING_INSTALLED = os.environ.get("LOWLAT_TEST_INSTALLED", "") not in ("", "0")
# The build tests need the source tree; the installed-wheel pass (make test-wheel) skips them.
IN_SOURCE_TREE = (ROOT / "setup.py").exists() and not TESTING_INSTALLED


@pytest.mark.skipif(not TESTING_INSTALLED, reason="only for the installed-wheel pass")
def test_installed_package_is_outside_the_source_tree():
    import lowlat

    assert not Path(lowlat.__file__).resolve().is_relative_to(ROOT / "src")


def _parameters(obj):
    params = list(inspect.signature(obj).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind, p.default) for p in params]


def _doc(obj):
    return inspect.cleandoc(obj.__doc__ or "")


def _public_members(cls):
    return sorted(name for name in dir(cls) if not name.startswith("_"))


def test_same_public_names():
    core, pure = load_backend("cython"), load_backend("python")
    assert sorted(core.__all__) == sorted(pure.__all__)
    for name in pure.__all__:
        assert hasattr(core, name) and hasattr(pure, name), name


def test_same_signatures_and_docstrings():
    core, pure = load_backend("cython"), load_backend("python")
    for name in pure.__all__:
        compiled, twin = getattr(core, name), getattr(pure, name)
        if isinstance(twin, type) and issubclass(twin, BaseException):
            assert compiled is twin, f"{name} must be the same exception class in both backends"
            continue
        assert _doc(compiled) == _doc(twin), f"docstring of {name}"
        if inspect.isclass(twin):
            assert _parameters(compiled) == _parameters(twin), f"signature of {name}"
            assert _public_members(compiled) == _public_members(twin), f"members of {name}"
            for member in _public_members(twin):
                a, b = getattr(compiled, member), getattr(twin, member)
                assert _doc(a) == _doc(b), f"docstring of {name}.{member}"
                if callable(b):
                    assert _parameters(a) == _parameters(b), f"signature of {name}.{member}"
        else:
            assert _parameters(compiled) == _parameters(twin), f"signature of {name}"


def _run(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, check=True).stdout.strip()


def test_default_import_is_compiled():
    load_backend("cython")  # skips unless the extension is built (fails when it is required)
    assert _run("import lowlat; print(lowlat.BACKEND, type(lowlat.SpscRing).__module__, lowlat.SpscRing.__module__)",
                LOWLAT_PURE_PYTHON="") == "cython builtins lowlat.containers._c"


def test_pure_python_forced_by_environment():
    out = _run("import lowlat; print(lowlat.BACKEND, lowlat.SpscRing.__module__)", LOWLAT_PURE_PYTHON="1")
    assert out == "python lowlat.containers._py"


def _copy_tree(dest):
    """Copy the source tree without build products, so a test build starts clean."""
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
        ".venv*", "build", "dist", "*.egg-info", "*.so", "*.c", ".git", ".pytest_cache", ".hypothesis", "__pycache__"))


def _plant_stale_binaries(src):
    """Leave compiled modules in ``src/build`` as an earlier build of the checkout would."""
    import sysconfig

    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    planted = []
    for build_lib in ("lib", f"lib.{sysconfig.get_platform()}-{sys.implementation.cache_tag}"):
        target = src / "build" / build_lib / "lowlat" / "containers" / f"_c{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\x7fELF stale")
        planted.append(target)
    return planted


def _build_wheel(tmp_path, stale_build=False, **env):
    env = {**os.environ, **env}
    env.pop("LOWLAT_REQUIRE_EXTENSIONS", None)
    out = tmp_path / "dist"
    # A copy of the tree keeps the source tree's build/ and egg-info out of the test.
    src = tmp_path / "src-copy"
    _copy_tree(src)
    if stale_build:
        _plant_stale_binaries(src)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-v", "-w", str(out), str(src)],
        env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = list(out.glob("lowlat-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], proc.stdout + proc.stderr


def _import_from_wheel(tmp_path, wheel):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = "import lowlat; r = lowlat.SpscRing(4); r.push(1); print(lowlat.BACKEND, r.pop(), lowlat.__file__)"
    env = {**os.environ, "PYTHONPATH": str(target), "LOWLAT_PURE_PYTHON": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout.split()
    assert out[2].startswith(str(target))
    return out[0], out[1]


@pytest.mark.skipif(not IN_SOURCE_TREE, reason="needs the source tree")
def test_wheel_without_extensions_is_pure(tmp_path):
    wheel, _ = _build_wheel(tmp_path, LOWLAT_NO_EXTENSIONS="1")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        assert not [n for n in zf.namelist() if n.endswith((".so", ".pyd", ".c", ".pyx"))]
    assert _import_from_wheel(tmp_path, wheel) == ("python", "1")


@pytest.mark.skipif(not IN_SOURCE_TREE, reason="needs the source tree")
def test_failed_compile_falls_back_with_one_warning(tmp_path):
    """A checkout built before, then built with no compiler: a pure wheel with no stale binary."""
    wheel, log = _build_wheel(tmp_path, stale_build=True, CC="false", LOWLAT_NO_EXTENSIONS="")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        assert not [n for n in zf.namelist() if n.endswith((".so", ".pyd"))], zf.namelist()
    warnings = [line for line in log.splitlines() if "lowlat: C extension not built" in line]
    assert len(warnings) == 1, warnings
    assert _import_from_wheel(tmp_path, wheel) == ("python", "1")


@pytest.mark.skipif(not IN_SOURCE_TREE, reason="needs the source tree")
def test_failed_compile_is_fatal_when_required(tmp_path):
    env = {**os.environ, "CC": "false", "LOWLAT_REQUIRE_EXTENSIONS": "1", "LOWLAT_NO_EXTENSIONS": ""}
    src = tmp_path / "src-copy"
    _copy_tree(src)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(tmp_path / "d"), str(src)],
        env=env, capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "LOWLAT_REQUIRE_EXTENSIONS" in proc.stdout + proc.stderr
    assert not list(tmp_path.glob("d/*.whl"))


def _concepts():
    """Every subpackage of lowlat that is a compiled/pure pair (it has a ``_py`` module)."""
    import pkgutil

    import lowlat

    return sorted(
        f"lowlat.{info.name}"
        for info in pkgutil.iter_modules(lowlat.__path__)
        if info.ispkg and (Path(lowlat.__path__[0]) / info.name / "_py.py").exists()
    )


@pytest.mark.parametrize("concept", _concepts())
def test_twins_agree_on_names_docstrings_and_subclassing(concept):
    """Each pair: the same public names and docstrings, and a class final in one is final in both."""
    compiled, pure = load_backend("cython", concept), load_backend("python", concept)
    assert sorted(compiled.__all__) == sorted(pure.__all__)
    for name in pure.__all__:
        ours, twin = getattr(compiled, name), getattr(pure, name)
        if not isinstance(twin, type) or issubclass(twin, BaseException) or twin is ours:
            continue
        assert _doc(ours) == _doc(twin), f"docstring of {concept}.{name}"
        finals = []
        for cls in (ours, twin):
            try:
                type("Sub", (cls,), {})
                finals.append(False)
            except TypeError:
                finals.append(True)
        assert finals[0] == finals[1], f"{concept}.{name}: final in one backend only"
