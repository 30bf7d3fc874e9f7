"""Every ``python`` code block of the README runs as written, on both backends, silently and cleanly."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lowlat

README = Path(__file__).resolve().parent.parent / "README.md"
pytestmark = pytest.mark.skipif(not README.exists(), reason="needs the source tree's README.md")


def _python_blocks():
    if not README.exists():
        return []
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(pytest.param(match.group(1), id=f"README.md:{line}"))
    return blocks


def _shm_names():
    shm = Path("/dev/shm")
    return {p.name for p in shm.iterdir()} if shm.is_dir() else set()


@pytest.mark.parametrize("code", _python_blocks())
def test_readme_block_runs(code, backend_name, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ)
    env["LOWLAT_PURE_PYTHON"] = "1" if backend_name == "python" else "0"
    # The block imports the lowlat under test (in-tree or installed), whatever the working directory.
    env["PYTHONPATH"] = os.pathsep.join([str(Path(lowlat.__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    before = _shm_names()
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", f"the block printed to stderr:\n{done.stderr}"
    new = _shm_names() - before
    if new:  # another process on the machine may be using segments of its own for a moment
        time.sleep(2.0)
        new &= _shm_names()
    assert new == set(), "the block left shared-memory segments behind"
