"""Pre-trade risk: every check at its limit, state changes, configuration errors, and a model."""

import inspect
import sys
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import load_backend
from lowlat.risk.config import BUY, REASONS, SELL, Reason, reason_message, reason_name

R = Reason
PX = 1_000_000  # $100.0000 with 4 implied decimals


@pytest.fixture(scope="module")
def risk(backend_name):
    return load_backend(backend_name, "lowlat.risk")


@pytest.fixture(scope="module")
def both():
    return [load_backend(name, "lowlat.risk") for name in ("cython", "python")]


def engine(risk, instruments=(1,), reference=PX, **limits):
    e = risk.RiskEngine(**limits)
    for i in instruments:
        e.add_instrument(i, reference)
    return e


def test_every_reason_has_a_name_and_a_message():
    assert set(REASONS) == {int(r) for r in Reason}
    for reason in Reason:
        assert reason_name(reason) == reason.name and reason_message(reason)
    with pytest.raises(ValueError):
        reason_name(99)


def test_no_limits_accepts_a_valid_order(risk):
    assert engine(risk).check(1, BUY, 100, PX, 0) == R.ACCEPTED


# -- each check exactly at its limit: one below passes, at passes, one above fails ------------------------

def test_max_order_quantity(risk):
    e = engine(risk, max_order_quantity=500)
    assert [e.check(1, BUY, q, PX, t) for t, q in enumerate((499, 500, 501))] == [0, 0, R.MAX_ORDER_QUANTITY]


def test_max_order_notional(risk):
    e = engine(risk, max_order_notional=100 * PX)
    results = [e.check(1, SELL, 100, p, t) for t, p in enumerate((PX - 1, PX, PX + 1))]
    assert results == [0, 0, R.MAX_ORDER_NOTIONAL]


def test_price_collar_both_sides_of_the_reference(risk):
    e = engine(risk, price_collar_bps=50)  # 0.5% of 1,000,000 = 5,000
    assert e.check(1, BUY, 1, PX + 4_999, 0) == 0
    assert e.check(1, BUY, 1, PX + 5_000, 1) == 0
    assert e.check(1, BUY, 1, PX + 5_001, 2) == R.PRICE_COLLAR
    assert e.check(1, SELL, 1, PX - 4_999, 3) == 0
    assert e.check(1, SELL, 1, PX - 5_000, 4) == 0
    assert e.check(1, SELL, 1, PX - 5_001, 5) == R.PRICE_COLLAR


def test_price_collar_needs_a_reference_and_follows_updates(risk):
    e = engine(risk, reference=0, price_collar_bps=100)
    assert e.check(1, BUY, 1, PX, 0) == R.NO_REFERENCE_PRICE
    e.set_reference_price(1, PX)
    assert e.check(1, BUY, 1, PX + 10_000, 1) == 0
    e.set_reference_price(1, PX - 1)
    assert e.check(1, BUY, 1, PX + 10_000, 2) == R.PRICE_COLLAR


def test_instrument_collar_overrides_the_engine(risk):
    e = engine(risk, instruments=(), price_collar_bps=10)
    e.add_instrument(1, PX, price_collar_bps=1000)
    e.add_instrument(2, PX)
    assert e.check(1, BUY, 1, PX + 100_000, 0) == 0
    assert e.check(2, BUY, 1, PX + 100_000, 1) == R.PRICE_COLLAR
    e.set_instrument_limit(1, "price_collar_bps", None)  # back to the engine's
    assert e.check(1, BUY, 2, PX + 100_000, 2) == R.PRICE_COLLAR


def test_position_limit_counts_open_orders_and_fills(risk):
    e = engine(risk, max_position=1000)
    assert e.check(1, BUY, 600, PX, 0) == 0          # open buy 600
    assert e.check(1, BUY, 401, PX, 1) == R.POSITION_LIMIT
    assert e.check(1, BUY, 399, PX, 2) == 0          # 999
    assert e.check(1, BUY, 1, PX, 3) == 0            # 1000: at the limit
    assert e.check(1, BUY, 1, PX, 4) == R.POSITION_LIMIT
    e.on_fill(1, BUY, 600, PX)                       # position 600, open 400
    assert (e.position(1), e.open_quantity(1, BUY)) == (600, 400)
    assert e.check(1, BUY, 1, PX, 5) == R.POSITION_LIMIT
    e.on_cancel(1, BUY, 400, PX)                     # open 0
    assert e.check(1, BUY, 400, PX, 6) == 0
    # Selling: the long position counts in our favour; open sells against it.
    assert e.check(1, SELL, 1601, PX, 7) == R.POSITION_LIMIT  # 600 long - 1601 = 1001 short
    assert e.check(1, SELL, 1600, PX, 7) == 0        # exactly 1000 short if every sell fills
    assert e.check(1, SELL, 1, PX, 8) == R.POSITION_LIMIT
    e.on_reject(1, SELL, 1, PX)                      # 1599 open: one more fits
    assert e.check(1, SELL, 1, PX, 9) == 0


def test_gross_exposure_counts_open_and_filled_notional(risk):
    e = engine(risk, max_gross_exposure=1000 * PX)
    assert e.check(1, BUY, 600, PX, 0) == 0
    assert e.check(1, SELL, 401, PX, 1) == R.GROSS_EXPOSURE
    assert e.check(1, SELL, 400, PX, 2) == 0         # exactly at the limit
    assert e.gross_exposure == 1000 * PX
    assert e.check(1, SELL, 1, PX, 3) == R.GROSS_EXPOSURE
    e.on_fill(1, BUY, 600, PX)                       # open -> filled: exposure unchanged
    assert e.check(1, SELL, 1, PX, 4) == R.GROSS_EXPOSURE
    e.on_cancel(1, SELL, 400, PX)
    assert e.gross_exposure == 600 * PX
    assert e.check(1, SELL, 400, PX, 5) == 0


def test_throttle_burst_and_refill(risk):
    e = engine(risk, throttle_rate=10, throttle_burst=3)  # a token every 100 ms
    assert [e.check(1, BUY, 1 + k, PX, 0) for k in range(4)] == [0, 0, 0, R.THROTTLE]
    assert e.check(1, BUY, 9, PX, 100_000_000 - 1) == R.THROTTLE
    assert e.check(1, BUY, 9, PX, 100_000_000) == 0
    assert e.check(1, BUY, 10, PX, 100_000_000) == R.THROTTLE
    # A long pause refills only up to the burst.
    assert [e.check(1, BUY, 20 + k, PX, 10**12) for k in range(4)] == [0, 0, 0, R.THROTTLE]


def test_instrument_throttle_is_per_instrument(risk):
    e = engine(risk, instruments=(1, 2), instrument_throttle_rate=2)  # burst defaults to the rate
    assert [e.check(1, BUY, 1 + k, PX, 0) for k in range(3)] == [0, 0, R.INSTRUMENT_THROTTLE]
    assert [e.check(2, BUY, 1 + k, PX, 0) for k in range(3)] == [0, 0, R.INSTRUMENT_THROTTLE]
    assert e.check(1, BUY, 7, PX, 500_000_000) == 0


def test_rejected_orders_take_no_token(risk):
    e = engine(risk, throttle_rate=1, max_order_quantity=10)
    assert e.check(1, BUY, 11, PX, 0) == R.MAX_ORDER_QUANTITY
    assert e.check(1, BUY, 10, PX, 0) == 0


def test_duplicate_window(risk):
    e = engine(risk, duplicate_window_ns=1_000)
    assert e.check(1, BUY, 100, PX, 0) == 0
    assert e.check(1, BUY, 100, PX, 999) == R.DUPLICATE_ORDER
    assert e.check(1, SELL, 100, PX, 999) == 0        # another side is another order
    assert e.check(1, BUY, 100, PX + 1, 999) == 0     # another price too
    assert e.check(1, BUY, 100, PX, 1_000) == 0       # exactly the window later: no longer a duplicate
    assert e.check(1, BUY, 100, PX, 1_500) == R.DUPLICATE_ORDER  # of the one at 1,000


def test_duplicate_memory_is_the_last_eight(risk):
    e = engine(risk, duplicate_window_ns=10**9)
    for k in range(9):
        assert e.check(1, BUY, 100 + k, PX, k) == 0
    assert e.check(1, BUY, 100, PX, 10) == 0          # the first has left the memory
    assert e.check(1, BUY, 108, PX, 10) == R.DUPLICATE_ORDER


def test_restricted_kill_switch_unknown_and_invalid(risk):
    e = engine(risk, instruments=(1, 2))
    e.set_restricted(2)
    assert e.check(2, BUY, 1, PX, 0) == R.RESTRICTED
    e.set_restricted(2, False)
    assert e.check(2, BUY, 1, PX, 0) == 0
    assert e.check(3, BUY, 1, PX, 0) == R.UNKNOWN_INSTRUMENT
    assert e.check(-1, BUY, 1, PX, 0) == R.UNKNOWN_INSTRUMENT
    assert e.check(10**6, BUY, 1, PX, 0) == R.UNKNOWN_INSTRUMENT
    assert e.check(2**62, BUY, 1, PX, 0) == R.UNKNOWN_INSTRUMENT
    for side, quantity, price in ((0, 1, PX), (2, 1, PX), (BUY, 0, PX), (BUY, -5, PX), (BUY, 1, 0), (BUY, 2**31, PX),
                                  (2**40 + 1, 1, PX), (BUY, 2**62, PX), (SELL, 1, -2**62), (BUY, 1, 2**63 - 1)):
        assert e.check(1, side, quantity, price, 0) == R.INVALID_ORDER
    e.kill()
    assert e.killed and e.check(1, BUY, 1, PX, 0) == R.KILL_SWITCH
    e.reset_kill_switch()
    assert not e.killed and e.check(1, BUY, 1, PX, 1) == 0


def test_restricted_at_add_instrument(risk):
    e = risk.RiskEngine()
    e.add_instrument(7, PX, restricted=True)
    assert e.check(7, BUY, 1, PX, 0) == R.RESTRICTED
    assert e.instrument_count == 1


def test_limits_change_while_running(risk):
    e = engine(risk, max_order_quantity=10)
    assert e.check(1, BUY, 11, PX, 0) == R.MAX_ORDER_QUANTITY
    e.set_limit("max_order_quantity", 20)
    assert e.check(1, BUY, 11, PX, 1) == 0
    e.set_limit("max_order_quantity", None)
    assert e.check(1, BUY, 10**6, PX, 2) == 0
    assert e.limits["max_order_quantity"] is None
    e.set_limit("throttle_rate", 1)
    assert [e.check(1, BUY, 1 + k, PX, 3) for k in range(2)] == [0, R.THROTTLE]


def test_default_clock_is_monotonic(risk):
    e = engine(risk, duplicate_window_ns=60 * 10**9)
    assert e.check(1, BUY, 5, PX) == 0
    assert e.check(1, BUY, 5, PX) == R.DUPLICATE_ORDER


# -- configuration errors -------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "error"), [
    ("max_order_quantity", -1, ValueError), ("max_order_quantity", 0, ValueError),
    ("price_collar_bps", 0, ValueError), ("price_collar_bps", -5, ValueError),
    ("max_position", 2**31, ValueError), ("max_gross_exposure", 2**62 + 1, ValueError),
    ("throttle_rate", 0, ValueError), ("duplicate_window_ns", -1, ValueError),
    ("max_order_notional", 1.5, TypeError), ("throttle_burst", "3", TypeError), ("max_position", True, TypeError),
])
def test_bad_configuration_names_the_field(risk, field, value, error):
    with pytest.raises(error, match=field):
        risk.RiskEngine(**{field: value})
    e = risk.RiskEngine()
    with pytest.raises(error, match=field):
        e.set_limit(field, value)


def test_bad_instrument_configuration(both):
    for risk in both:
        e = risk.RiskEngine()
        with pytest.raises(ValueError, match="instrument_id"):
            e.add_instrument(-1)
        with pytest.raises(ValueError, match="instrument_id"):
            e.add_instrument(2**20)
        with pytest.raises(ValueError, match="reference_price"):
            e.add_instrument(1, -1)
        with pytest.raises(ValueError, match="price_collar_bps"):
            e.add_instrument(1, PX, price_collar_bps=0)
        with pytest.raises(ValueError, match="never added"):
            e.on_fill(3, BUY, 1, PX)
        e.add_instrument(1, PX)
        with pytest.raises(ValueError, match="side"):
            e.on_fill(1, 0, 1, PX)
        with pytest.raises(ValueError, match="quantity"):
            e.on_cancel(1, BUY, 0, PX)
        with pytest.raises(ValueError, match="unknown instrument limit"):
            e.set_instrument_limit(1, "max_order_quantity", 5)
        with pytest.raises(ValueError, match="unknown risk limit"):
            e.set_limit("nope", 5)


def _error(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - compared between backends
        return type(exc), str(exc)
    return None


def test_errors_are_the_same_in_both_backends(both):
    calls = [
        lambda r: r.RiskEngine(price_collar_bps=0),
        lambda r: r.RiskEngine(max_position="x"),
        lambda r: r.RiskEngine().add_instrument(1.5),
        lambda r: r.RiskEngine().position(0),
        lambda r: r.RiskEngine().set_limit("max_order_quantity", -3),
    ]
    for call in calls:
        results = [_error(lambda: call(r)) for r in both]
        assert results[0] is not None and results[0] == results[1]


# -- a plain model under random order flows --------------------------------------------------------------

class Model:
    """The rules written the obvious way: full histories, exact fractions for the buckets."""

    def __init__(self, limits):
        self.limits = dict(limits)
        self.instruments = {}
        self.killed = False
        self.open_notional = 0
        self.filled_notional = 0
        self.bucket = None
        self.reset_bucket()

    def reset_bucket(self):
        rate = self.limits.get("throttle_rate")
        self.bucket = None if rate is None else [Fraction(self.limits.get("throttle_burst") or rate), None]

    def instrument_bucket(self):
        rate = self.limits.get("instrument_throttle_rate")
        return None if rate is None else [Fraction(self.limits.get("instrument_throttle_burst") or rate), None]

    def add(self, i, reference):
        if i not in self.instruments:
            self.instruments[i] = dict(position=0, open={1: 0, -1: 0}, reference=reference, history=[],
                                       bucket=self.instrument_bucket())
        self.instruments[i]["reference"] = reference

    @staticmethod
    def refill(bucket, now, rate, burst):
        tokens, last = bucket
        if last is not None and now > last:
            tokens = min(Fraction(burst), tokens + Fraction((now - last) * rate, 10**9))
        return tokens

    def check(self, i, side, quantity, price, now):
        L = self.limits
        if self.killed:
            return R.KILL_SWITCH
        if side not in (1, -1) or not 0 < quantity < 2**31 or not 0 < price < 2**31:
            return R.INVALID_ORDER
        if i not in self.instruments:
            return R.UNKNOWN_INSTRUMENT
        ins = self.instruments[i]
        if L.get("max_order_quantity") is not None and quantity > L["max_order_quantity"]:
            return R.MAX_ORDER_QUANTITY
        if L.get("max_order_notional") is not None and quantity * price > L["max_order_notional"]:
            return R.MAX_ORDER_NOTIONAL
        if L.get("price_collar_bps") is not None:
            if ins["reference"] == 0:
                return R.NO_REFERENCE_PRICE
            if Fraction(abs(price - ins["reference"]), ins["reference"]) > Fraction(L["price_collar_bps"], 10_000):
                return R.PRICE_COLLAR
        if L.get("max_position") is not None:
            worst = ins["position"] + ins["open"][1] + quantity if side == 1 else ins["position"] - ins["open"][-1] - quantity
            if abs(worst) > L["max_position"] and (worst > 0) == (side == 1):
                return R.POSITION_LIMIT
        if L.get("max_gross_exposure") is not None:
            if self.open_notional + self.filled_notional + quantity * price > L["max_gross_exposure"]:
                return R.GROSS_EXPOSURE
        if L.get("duplicate_window_ns") is not None:
            for s, q, p, t in ins["history"][-8:]:
                if (s, q, p) == (side, quantity, price) and now - t < L["duplicate_window_ns"]:
                    return R.DUPLICATE_ORDER
        rate = L.get("instrument_throttle_rate")
        if rate is not None:
            mine = self.refill(ins["bucket"], now, rate, L.get("instrument_throttle_burst") or rate)
            if mine < 1:
                return R.INSTRUMENT_THROTTLE
        if self.bucket is not None:
            rate = L["throttle_rate"]
            overall = self.refill(self.bucket, now, rate, L.get("throttle_burst") or rate)
            if overall < 1:
                return R.THROTTLE
        if L.get("instrument_throttle_rate") is not None:
            last = ins["bucket"][1]
            ins["bucket"] = [mine - 1, now if last is None else max(last, now)]
        if self.bucket is not None:
            last = self.bucket[1]
            self.bucket = [overall - 1, now if last is None else max(last, now)]
        ins["open"][side] += quantity
        self.open_notional += quantity * price
        ins["history"].append((side, quantity, price, now))
        return R.ACCEPTED

    def close(self, i, side, quantity, price):
        ins = self.instruments[i]
        ins["open"][side] = max(0, ins["open"][side] - quantity)
        self.open_notional = max(0, self.open_notional - quantity * price)

    def fill(self, i, side, quantity, price):
        self.close(i, side, quantity, price)
        self.instruments[i]["position"] += side * quantity
        self.filled_notional += quantity * price


# Coarse values, so that hypothesis often lands exactly on a limit: quantities and limits in lots of
# 50, prices mostly at the reference, collars in whole percents of it, clock steps in whole ms that
# divide the windows and the refill intervals.
MS = 1_000_000
limit_values = st.fixed_dictionaries({}, optional={
    "max_order_quantity": st.integers(1, 8).map(lambda k: 50 * k),
    "max_order_notional": st.integers(1, 8).map(lambda k: 5_000 * k),
    "price_collar_bps": st.sampled_from([100, 300, 500, 3000]),
    "max_position": st.integers(1, 30).map(lambda k: 50 * k),
    "max_gross_exposure": st.integers(1, 100).map(lambda k: 5_000 * k),
    "throttle_rate": st.sampled_from([1, 2, 5, 10, 50, 100]),
    "throttle_burst": st.integers(1, 6),
    "instrument_throttle_rate": st.sampled_from([1, 2, 5, 10, 50]),
    "instrument_throttle_burst": st.integers(1, 6),
    "duplicate_window_ns": st.integers(1, 50).map(lambda k: k * MS),
})
prices = st.sampled_from([95, 99, 100, 100, 100, 101, 105])
order = st.tuples(st.just("check"), st.integers(0, 3), st.sampled_from([1, -1, 1, -1, 0]), st.integers(1, 5).map(lambda q: q * 50),
                  prices, st.integers(0, 40).map(lambda k: k * MS))
event = st.tuples(st.sampled_from(["fill", "cancel", "reject"]), st.integers(0, 2), st.sampled_from([1, -1]),
                  st.integers(1, 6).map(lambda q: q * 50), prices)
other = st.one_of(
    st.tuples(st.just("reference"), st.integers(0, 2), st.sampled_from([0, 97, 100, 103])),
    st.tuples(st.just("kill"), st.booleans()),
    st.tuples(st.just("limit"), st.sampled_from(["max_order_quantity", "max_position", "price_collar_bps", "throttle_rate"]),
              st.one_of(st.none(), st.integers(1, 10).map(lambda k: 50 * k))),
)
operations = st.lists(st.one_of(order, order, order, event, other), max_size=80)


@settings(max_examples=300, deadline=None)
@given(limits=limit_values, ops=operations)
def test_backends_follow_the_model(both, limits, ops):
    engines = [r.RiskEngine(**limits) for r in both]
    model = Model(limits)
    for i in range(3):  # instrument 3 is never added
        for e in engines:
            e.add_instrument(i, 100)
        model.add(i, 100)
    clock = 0
    for op in ops:
        kind = op[0]
        if kind == "check":
            _, i, side, quantity, price, step = op
            clock += step
            expected = model.check(i, side, quantity, price, clock)
            # preview answers what check will, and changes nothing check (or the state asserts) would see
            assert [e.preview(i, side, quantity, price, clock) for e in engines] == [expected, expected], op
            assert [e.check(i, side, quantity, price, clock) for e in engines] == [expected, expected], op
        elif kind in ("fill", "cancel", "reject"):
            _, i, side, quantity, price = op
            for e in engines:
                getattr(e, "on_" + kind)(i, side, quantity, price)
            (model.fill if kind == "fill" else model.close)(i, side, quantity, price)
        elif kind == "reference":
            _, i, price = op
            for e in engines:
                e.set_reference_price(i, price)
            model.instruments[i]["reference"] = price
        elif kind == "kill":
            for e in engines:
                e.kill() if op[1] else e.reset_kill_switch()
            model.killed = op[1]
        else:
            _, name, value = op
            for e in engines:
                e.set_limit(name, value)
            model.limits[name] = value
            if name == "throttle_rate":
                model.reset_bucket()
        for e in engines:
            assert e.gross_exposure == model.open_notional + model.filled_notional
            for i in range(3):
                ins = model.instruments[i]
                assert (e.position(i), e.open_quantity(i, 1), e.open_quantity(i, -1)) == (
                    ins["position"], ins["open"][1], ins["open"][-1])


@pytest.mark.c_extension
def test_compiled_check_allocates_nothing():
    risk = load_backend("cython", "lowlat.risk")
    e = engine(risk, instruments=range(64), max_order_quantity=10**6, max_order_notional=2**62, price_collar_bps=1000,
               max_position=2**31 - 1, max_gross_exposure=2**62, throttle_rate=10**9, instrument_throttle_rate=10**9,
               duplicate_window_ns=1)
    check = e.check
    for k in range(100):
        check(k & 63, 1, 100, PX)
    before = sys.getallocatedblocks()
    for k in range(20_000):
        check(k & 63, 1, 100, PX)
        check(k & 63, -1, 100, PX, k)
    assert sys.getallocatedblocks() - before < 50


# -- one interface ---------------------------------------------------------------------------------------

def _parameters(obj):
    params = list(inspect.signature(obj).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind, p.default) for p in params]


def test_backends_have_one_interface(both):
    compiled, pure = both
    assert compiled.__all__ == pure.__all__ == ["RiskEngine"]
    a, b = compiled.RiskEngine, pure.RiskEngine
    assert inspect.cleandoc(a.__doc__) == inspect.cleandoc(b.__doc__)
    assert _parameters(a) == _parameters(b)
    members = sorted(n for n in dir(b) if not n.startswith("_"))
    assert members == sorted(n for n in dir(a) if not n.startswith("_"))
    for member in members:
        ma, mb = getattr(a, member), getattr(b, member)
        assert inspect.cleandoc(ma.__doc__ or "") == inspect.cleandoc(mb.__doc__ or ""), member
        if callable(mb):
            assert _parameters(ma) == _parameters(mb), member


def test_stub_names_match(risk):
    import ast
    from pathlib import Path

    import lowlat.risk

    tree = ast.parse(Path(lowlat.risk.__file__).with_name("_c.pyi").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert cls.name == "RiskEngine"
    stubbed = {n.name for n in cls.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    assert stubbed == {n for n in dir(risk.RiskEngine) if not n.startswith("_")}


def test_default_import_is_compiled_unless_forced():
    import os
    import subprocess

    load_backend("cython", "lowlat.risk")  # skips unless built (fails when required)
    code = "import lowlat.risk as r; print(r.BACKEND, r.RiskEngine.__module__)"
    env = {**os.environ, "LOWLAT_PURE_PYTHON": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["cython", "lowlat.risk._c"]
    env["LOWLAT_PURE_PYTHON"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["python", "lowlat.risk._py"]


def test_state_changes_survive_checks_that_run_python_code(both):
    """An int subclass whose comparisons grow the engine's table mid-call must not leave a stale pointer."""

    class Sneaky(int):
        engine = None
        grown = 0

        def _grow(self):
            Sneaky.grown += 1
            Sneaky.engine.add_instrument(1_000 * Sneaky.grown + 50_000, PX)  # reallocates the compiled table

        def __ge__(self, other):
            self._grow()
            return int(self) >= other

        def __le__(self, other):
            self._grow()
            return int(self) <= other

    results = []
    for risk in both:
        e = engine(risk)
        assert e.check(1, BUY, 100, PX, 0) == 0
        Sneaky.engine = e
        e.on_fill(1, BUY, Sneaky(60), PX)
        e.on_cancel(1, BUY, Sneaky(10), PX)
        e.set_reference_price(1, Sneaky(PX + 1))
        e.set_instrument_limit(1, "max_position", Sneaky(500))
        results.append((e.position(1), e.open_quantity(1, BUY), e.gross_exposure, e.instrument_count,
                        e.check(1, BUY, 411, PX, 1), e.check(1, BUY, 410, PX, 2)))
    assert results[0] == results[1]
    assert results[0][:2] == (60, 30) and results[0][4:] == (R.POSITION_LIMIT, 0)
