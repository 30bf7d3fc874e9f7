"""The ``lowlat`` command line: ``bench`` (table, ``--json``, ``--report``), ``info``, ``--version``.

Every run is a real subprocess of ``python -m lowlat`` on a few fast sections with ``--quick``.
"""

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lowlat

JSON_KEYS = {"section", "group", "contender", "backend", "unit", "value", "spread", "ratio", "reference", "target",
             "met", "higher_is_better", "note", "distribution"}


def _lowlat(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "lowlat", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_version():
    proc = _lowlat("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"lowlat {lowlat.__version__}"


def test_bench_typo_prints_the_bench_usage():
    proc = _lowlat("bench", "--quik")
    assert proc.returncode == 2
    assert "usage: lowlat bench" in proc.stderr and "--quik" in proc.stderr


def test_bad_json_path_is_reported_before_any_work(tmp_path):
    missing = tmp_path / "no-such-dir" / "out.json"
    proc = _lowlat("bench", "--quick", "--only", "timers", "--json", str(missing), timeout=30)
    assert proc.returncode == 2 and "cannot write --json" in proc.stderr
    assert "[1/" not in proc.stderr and proc.stdout == ""  # no section started
    assert not missing.parent.exists()


def test_report_path_that_is_a_file_is_refused(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    proc = _lowlat("bench", "--quick", "--only", "timers", "--report", str(afile), timeout=30)
    assert proc.returncode == 2 and "cannot write --report" in proc.stderr and "[1/" not in proc.stderr


def test_list_names_every_section():
    from lowlat.bench import SECTIONS

    proc = _lowlat("bench", "--list", timeout=60)
    assert proc.returncode == 0 and proc.stdout.split()[:len(SECTIONS)] == list(SECTIONS)
    assert {"async", "connpool", "batching", "adaptive", "orders", "fix"} <= set(SECTIONS)


def test_bench_rejects_unknown_section():
    proc = _lowlat("bench", "--only", "nope", timeout=60)
    assert proc.returncode == 2 and "unknown section" in proc.stderr


def test_only_runs_a_repeated_section_once(tmp_path):
    out = tmp_path / "bench.json"
    proc = _lowlat("bench", "--quick", "--only", "layout", "layout", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert [s["section"] for s in data["sections"]] == ["layout"]
    pairs = [(r["group"], r["contender"]) for r in data["rows"]]
    assert len(pairs) == len(set(pairs)) > 0


@pytest.mark.parametrize("pure", [False, True])
def test_info_says_which_backend_and_why(pure):
    env = {"LOWLAT_PURE_PYTHON": "1" if pure else ""}
    proc = _lowlat("info", "--json", env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert {"backend", "why_not_compiled", "clock_source", "tsc", "cpu", "cores", "caches", "versions"} <= set(info)
    assert info["versions"]["lowlat"] == lowlat.__version__
    assert info["cores"] == os.cpu_count()
    if pure:
        assert info["backend"] == "python" and "LOWLAT_PURE_PYTHON" in info["why_not_compiled"]["lowlat"]
    else:
        assert info["backend"] == lowlat.BACKEND
        assert (info["backend"] == "cython") == (info["why_not_compiled"] == {})
    text = _lowlat("info", env=env, timeout=60)
    assert text.returncode == 0 and f"backend: {info['backend']}" in text.stdout


def _check_schema(data):
    assert data["rows"], "no rows"
    for row in data["rows"]:
        assert JSON_KEYS <= set(row), set(row) ^ JSON_KEYS
        assert isinstance(row["value"], float) and isinstance(row["unit"], str) and row["unit"]
        assert row["met"] in (None, True, False)
        assert (row["met"] is None) == (row["target"] is None)
    groups = {}
    for row in data["rows"]:
        groups.setdefault((row["section"], row["group"]), []).append(row)
    for members in groups.values():
        refs = [r for r in members if r["reference"]]
        assert len(refs) == 1
        assert refs[0]["ratio"] is None or refs[0]["ratio"] == pytest.approx(1.0)
        for r in members:
            if r["ratio"] is not None:
                assert r["ratio"] == pytest.approx(r["value"] / refs[0]["value"])


def _images(html_text):
    return re.findall(r"<img src='([^']+)'", html_text)


def test_quick_report_writes_json_html_markdown_and_plots(tmp_path):
    out, report = tmp_path / "bench.json", tmp_path / "report"
    proc = _lowlat("bench", "--quick", "--only", "layout", "tracker", "msgqueues", "--json", str(out),
                   "--report", str(report), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "[1/" in proc.stderr  # progress goes to stderr
    assert "MET" in proc.stdout or "MISSED" in proc.stdout  # targets are judged in the table
    data = json.loads(out.read_text())
    _check_schema(data)
    assert {r["section"] for r in data["rows"]} == {"layout", "tracker", "msgqueues"}
    assert all(s["seed_cell"] and s["seed_says"] for s in data["sections"])
    assert all(s["measured"] for s in data["sections"] if not s["skipped"])
    assert any(r["distribution"] for r in data["rows"] if r["section"] == "msgqueues")
    html_text = (report / "index.html").read_text()
    markdown = (report / "report.md").read_text()
    assert "layout" in html_text and "msgqueues" in markdown
    assert data["machine"]["cpu"] in html_text
    images = _images(html_text)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not images and "lowlat[plot]" in html_text
    else:
        assert images and all(not Path(src).is_absolute() for src in images)
        assert all((report / src).stat().st_size > 0 for src in images)
        assert all(f"]({src})" in markdown for src in images)


def test_report_without_matplotlib_says_how_and_keeps_the_tables(tmp_path):
    report = tmp_path / "report"
    script = ("import sys; sys.modules['matplotlib'] = None\n"
              "from lowlat.__main__ import main\n"
              f"sys.exit(main(['bench', '--quick', '--only', 'layout', '--report', {str(report)!r}]))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    html_text = html.unescape((report / "index.html").read_text())
    assert "pip install 'lowlat[plot]'" in html_text and "<table>" in html_text and not _images(html_text)
    assert "lowlat[plot]" in (report / "report.md").read_text()


def test_exchange_command_serves_on_loopback_until_interrupted():
    """`lowlat exchange --port 0` prints where it listens, accepts a TCP connection, stops on Ctrl-C."""
    import signal
    import socket

    proc = subprocess.Popen([sys.executable, "-m", "lowlat", "exchange", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("lowlat exchange listening on 127.0.0.1:"), line + proc.stderr.read()
        port = int(line.split(":")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_top_level_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "lowlat", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in ("bench", "info", "exchange", "pipeline"):
        assert command in out.stdout
    help_text = subprocess.run([sys.executable, "-m", "lowlat", "exchange", "--help"], capture_output=True, text=True,
                               timeout=60).stdout
    assert "--port" in help_text and "lowlat exchange" in help_text
