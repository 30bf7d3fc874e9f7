"""Build lowlat: the Cython core is optional, the pure-Python twin always installs.

Environment:
  LOWLAT_NO_EXTENSIONS=1       build a pure ``py3-none-any`` wheel, skipping Cython.
  LOWLAT_REQUIRE_EXTENSIONS=1  a failed compile is fatal (CI, ``make test`` and wheel builds).
  LOWLAT_EXTRA_CFLAGS / LOWLAT_EXTRA_LDFLAGS  added compiler / linker flags (``make test-asan``).
Every ``src/lowlat/**/*.pyx`` is one extension module (``lowlat/itch/_c.pyx`` -> ``lowlat.itch._c``);
``.pxd`` files shared between them are found from ``src``.
Without either, a failed compile (no compiler, no Cython) prints one warning line and the
build continues as a pure-Python wheel -- never a platform wheel without its binary.
"""

import glob
import importlib.machinery
import os
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel


def _flag(name):
    # The same rule as lowlat._backend.env_flag: unset, "", 0, false, no and off mean off.
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


NO_EXTENSIONS = _flag("LOWLAT_NO_EXTENSIONS")
REQUIRE_EXTENSIONS = _flag("LOWLAT_REQUIRE_EXTENSIONS")
_state = {"failed": None}


def _give_up(reason):
    if REQUIRE_EXTENSIONS:
        raise SystemExit(f"lowlat: building the C extension failed and LOWLAT_REQUIRE_EXTENSIONS is set: {reason}")
    _state["failed"] = reason
    sys.stderr.write(f"WARNING: lowlat: C extension not built ({reason}); installing the pure-Python backend\n")


def _pyx_sources():
    """Every compiled half of the package: ``src/lowlat/**/*.pyx`` (``_core.pyx``, ``*/_c.pyx``)."""
    return sorted(glob.glob("src/lowlat/**/*.pyx", recursive=True))


def _module_of(path):
    return os.path.splitext(os.path.relpath(path, "src"))[0].replace(os.sep, ".")


def _packages():
    """Every package under ``src`` (new ones included) and ``lowlat.bench``, mapped to ``bench/``.

    ``lowlat.bench`` is listed by name: in a checkout ``src/lowlat/bench`` is a symlink that
    ``find_packages`` follows, but an sdist carries the ``bench/`` folder only.
    """
    return sorted({*find_packages("src"), "lowlat.bench"})


def _remove_binaries(build_lib):
    """Delete compiled modules a previous build left in ``build_lib``: a pure wheel carries none."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for path in glob.glob(os.path.join(build_lib, "lowlat", "**", "*"), recursive=True):
        if path.endswith(suffixes):
            os.remove(path)


def _extensions():
    if NO_EXTENSIONS:
        return []
    try:
        import numpy
        from Cython.Build import cythonize

        extra = ["-O3", *os.environ.get("LOWLAT_EXTRA_CFLAGS", "").split()]
        link = os.environ.get("LOWLAT_EXTRA_LDFLAGS", "").split()
        exts = [
            Extension(
                _module_of(path),
                [path],
                include_dirs=[numpy.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=extra,
                extra_link_args=link,
            )
            for path in _pyx_sources()
        ]
        return cythonize(exts, include_path=["src"], compiler_directives={"language_level": 3}, quiet=True)
    except Exception as exc:  # Cython or numpy missing, or a Cython compile error
        _give_up(f"{type(exc).__name__}: {exc}".splitlines()[0])
        return []


class optional_build_ext(build_ext):
    """Compile the extension; on failure fall back to pure Python unless required."""

    def run(self):
        try:
            super().run()
        except Exception as exc:
            _give_up(f"{type(exc).__name__}: {exc}".splitlines()[0])

    def build_extension(self, ext):
        if _state["failed"] is not None:  # all or nothing: one failure makes the whole wheel pure
            return
        try:
            super().build_extension(ext)
        except Exception as exc:
            _give_up(f"{type(exc).__name__}: {exc}".splitlines()[0])


class pure_aware_bdist_wheel(bdist_wheel):
    """Tag the wheel ``py3-none-any`` whenever the extension did not build."""

    def run(self):
        if not self.skip_build:
            self.run_command("build")
        if _state["failed"] is not None or not self.distribution.ext_modules:
            self.distribution.ext_modules = []
            self.root_is_pure = True
            _remove_binaries(self.get_finalized_command("build").build_lib)
        super().run()


setup(
    packages=_packages(),
    ext_modules=_extensions(),
    cmdclass={"build_ext": optional_build_ext, "bdist_wheel": pure_aware_bdist_wheel},
)
