"""The `lowlat bench` command: runs, reports progress on stderr, writes JSON."""

import json
import os
import subprocess
import sys


def test_bench_quick_core_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "LOWLAT_PURE_PYTHON": ""}
    proc = subprocess.run([sys.executable, "-m", "lowlat", "bench", "--quick", "--only", "core", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "[1/" in proc.stderr  # progress goes to stderr
    assert "SpscRing push+pop" in proc.stdout and "collections.deque" in proc.stdout
    data = json.loads(out.read_text())
    labels = {row["label"] for row in data["rows"]}
    assert {"python SpscRing", "collections.deque append+popleft", "heapq with (priority, seq, ts, msg) tuples"} <= labels
    assert all(row["value"] >= 0 for row in data["rows"])


def test_bench_rejects_unknown_section():
    proc = subprocess.run([sys.executable, "-m", "lowlat", "bench", "--only", "nope"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "unknown section" in proc.stderr
