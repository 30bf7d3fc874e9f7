"""Rings left open when the interpreter exits close quietly: no BufferError, no warning, no leak."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lowlat

LEFT_OPEN = textwrap.dedent(
    """
    import multiprocessing

    import numpy as np

    import lowlat


    def consume(name):
        with lowlat.ShmRing.attach(name) as ring:
            while ring.get(timeout=5.0) != b"stop":
                pass


    if __name__ == "__main__":
        ring = lowlat.ShmRing.create(capacity_bytes=4096)
        child = multiprocessing.get_context("spawn").Process(target=consume, args=(ring.name,))
        child.start()
        ring.put(b"stop", timeout=5.0)
        child.join()
        ring.unlink()
        records = lowlat.ShmRecordRing.create(np.dtype([("ts", "<i8"), ("px", "<f8")]), 64)
        record_reader = lowlat.ShmRecordRing.attach(records.name)
        records.write(np.zeros(8, dtype=records.dtype))
        record_reader.read(4)
        records.unlink()
        print(ring.name, records.name)  # every ring is left open for the interpreter to close
    """
)


def test_rings_left_open_at_exit_close_quietly(backend_name, tmp_path):
    env = {**os.environ, "LOWLAT_PURE_PYTHON": "1" if backend_name == "python" else "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(lowlat.__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    script = tmp_path / "left_open.py"
    script.write_text(LEFT_OPEN, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    for name in done.stdout.split():
        assert not os.path.exists(f"/dev/shm/{name}")
