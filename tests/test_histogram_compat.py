"""What hdrhistogram users expect: its method names, bucket iteration, the .hgrm text; equality and
pickles that cross backends."""

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lowlat
from conftest import load_backend


def _filled(impl, values=(1, 5, 5, 900, 12_345, 3_000_000)):
    h = impl.LatencyHistogram()
    for value in values:
        h.record(value)
    return h


def test_equality_is_settings_counts_and_totals(impl):
    h = _filled(impl)
    assert h == h.copy()
    assert not h != h.copy()
    other = h.copy()
    other.record(7)
    assert h != other
    assert impl.LatencyHistogram() == impl.LatencyHistogram()
    assert impl.LatencyHistogram(significant_figures=2) != impl.LatencyHistogram(significant_figures=3)
    assert h != "histogram"
    with pytest.raises(TypeError):
        hash(h)


def test_hdrhistogram_names_give_the_same_answers(impl):
    h = impl.LatencyHistogram()
    assert h.record_value(42) is True and h.record_value(1000, 3) is True
    assert h.record_corrected_value(10_000, 2_000) is True
    assert h.get_total_count() == h.count
    assert h.get_value_at_percentile(99.0) == h.percentile(99.0)
    assert h.get_percentile_to_value_dict([50, 90]) == h.percentiles([50, 90])
    assert (h.get_min_value(), h.get_max_value(), h.get_mean_value(), h.get_stddev()) == (h.min, h.max, h.mean, h.stdev)
    before = h.count
    h.add(h.copy())
    assert h.count == 2 * before


def test_hdrhistogram_names_match_hdrhistogram():
    hdrh = pytest.importorskip("hdrh.histogram")
    ours = lowlat.LatencyHistogram(1, 3_600_000_000_000, 3)
    theirs = hdrh.HdrHistogram(1, 3_600_000_000_000, 3)
    rng = np.random.default_rng(7)
    for value in rng.lognormal(9, 1.5, 5_000).astype(np.int64).tolist():
        ours.record_value(value)
        theirs.record_value(value)
    for p in (0.0, 50.0, 90.0, 99.0, 99.9, 100.0):
        assert ours.get_value_at_percentile(p) == theirs.get_value_at_percentile(p)
    assert ours.get_total_count() == theirs.get_total_count()


def test_buckets_list_every_recorded_value(impl):
    h = _filled(impl)
    buckets = h.buckets()
    assert sum(count for _, _, count in buckets) == h.count
    assert [low for low, _, _ in buckets] == sorted(low for low, _, _ in buckets)
    for value in (1, 5, 900, 12_345, 3_000_000):
        assert any(low <= value <= high for low, high, _ in buckets), value
    assert impl.LatencyHistogram().buckets() == []


def test_percentile_distribution_is_hdrhistograms_text(impl):
    h = _filled(impl, values=range(1, 10_001))
    out = io.StringIO()
    h.output_percentile_distribution(out, value_scale=1000.0)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    rows = [line.split() for line in lines[2:] if not line.startswith("#")]
    levels = [float(row[1]) for row in rows]
    assert levels[0] == 0.0 and levels[-1] == 1.0 and levels == sorted(levels)
    assert [int(row[2]) for row in rows][-1] == h.count
    assert float(rows[-1][0]) == pytest.approx(h.max / 1000.0, rel=1e-3)
    assert len(rows[-1]) == 3 and all(len(row) == 4 for row in rows[:-1])
    assert lines[-3].startswith("#[Mean") and lines[-2].startswith("#[Max") and lines[-1].startswith("#[Buckets")
    for value, level, _, _ in rows[1:-1]:  # a row's value is the percentile's value at its level
        assert float(value) * 1000.0 >= h.percentile(float(level) * 100.0) - 1
    with pytest.raises(ValueError, match="ticks_per_half_distance"):
        h.output_percentile_distribution(io.StringIO(), ticks_per_half_distance=0)


def test_pickles_cross_backends(backend_name, tmp_path):
    """A histogram pickled by one backend loads where only the other one runs."""
    other = "python" if backend_name == "cython" else "cython"
    source = load_backend(other).LatencyHistogram()
    for value in (3, 30, 300_000):
        source.record(value)
    path = tmp_path / "h.pickle"
    path.write_bytes(pickle.dumps(source))
    # Where only the loading backend exists: the other one cannot be imported at all.
    missing = {"cython": "lowlat.hist._c", "python": "lowlat.hist._py"}[other]
    code = (
        f"import sys; sys.modules[{missing!r}] = None; "
        "import pickle, lowlat; h = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(lowlat.BACKEND, type(h).__module__, h.count, h.max)"
    )
    env = {**os.environ, "LOWLAT_PURE_PYTHON": "1" if backend_name == "python" else "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(lowlat.__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True, check=True)
    backend, module, count, top = out.stdout.split()
    assert backend == backend_name and module.endswith("._py" if backend_name == "python" else "._c")
    assert (int(count), int(top)) == (3, 300_000)
