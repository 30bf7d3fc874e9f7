"""FIX SequenceReset in reset mode (no GapFillFlag): byte by byte, then once over real TCP.

FIX 4.2/4.4: a reset-mode SequenceReset ignores its MsgSeqNum (no ResendRequest, never "too
low", PossDupFlag irrelevant) and sets the next expected number to NewSeqNo; it may only raise
it: a lower NewSeqNo is rejected (session Reject, "value is incorrect (out of range) for this
tag") and the expected number stays.
"""

import socket
import threading
import time

import pytest

from lowlat import fix
from lowlat.net import fix_session as fs
from lowlat.net.fix_orders import FixOrderSession

WALL = 1_764_000_000_000_000_000
STAMP = b"52=20251124-16:00:00.000\x01"


def frame(begin, body):
    """A FIX message with a correct BodyLength and CheckSum around ``body`` (tag=value fields)."""
    head = b"8=%s\x019=%d\x01" % (begin.encode(), len(body))
    return head + body + b"10=%03d\x01" % (sum(head + body) % 256)


def reset(new_seq_no, seq_num, begin=fix.FIX44, possible_duplicate=False, gap_fill_no=False):
    """A SequenceReset from EXCH to CLIENT in reset mode, written by hand (any MsgSeqNum)."""
    body = b"35=4\x0149=EXCH\x0156=CLIENT\x0134=%d\x01" % seq_num
    body += b"43=Y\x01" if possible_duplicate else b""
    body += STAMP
    body += b"123=N\x01" if gap_fill_no else b""
    return frame(begin, body + b"36=%d\x01" % new_seq_no)


def splits(data):
    yield [data]
    yield [data[i:i + 1] for i in range(len(data))]
    for cut in (1, len(data) // 2, len(data) - 1):
        yield [data[:cut], data[cut:]]


def feed(session, chunks, now=0.1):
    events = []
    for chunk in chunks:
        events.extend(session.receive_data(chunk, now))
    return events


def logged_on(begin=fix.FIX44):
    client = fs.FixSession("CLIENT", "EXCH", begin, heartbeat_interval=1.0, wall_clock_ns=lambda: WALL)
    server = fs.FixSession("EXCH", "CLIENT", begin, heartbeat_interval=1.0, initiator=False,
                           wall_clock_ns=lambda: WALL)
    server.receive_data(client.logon(0.0), 0.0)
    client.receive_data(server.data_to_send(), 0.0)
    assert client.state is server.state is fs.FixState.ACTIVE and client.next_in == 2
    return client, server


def client_at(next_in, begin=fix.FIX44):
    """An active client session expecting ``next_in`` from the exchange."""
    client = fs.FixSession("CLIENT", "EXCH", begin, heartbeat_interval=1.0, next_in=next_in,
                           wall_clock_ns=lambda: WALL)
    client.state = fs.FixState.ACTIVE
    return client


def report(server, token, now=0.0):
    return server.send("execution_report", now, "X" + token, "E" + token, fix.ExecType.NEW, fix.OrdStatus.NEW, "AAPL",
                       fix.Side.BUY, 100, 0, 0, cl_ord_id=token)


def heartbeat_numbered(seq_num, begin=fix.FIX44, possible_duplicate=False):
    dup = b"43=Y\x01" if possible_duplicate else b""
    return frame(begin, b"35=0\x0149=EXCH\x0156=CLIENT\x0134=%d\x01" % seq_num + dup + STAMP)


# ------------------------------------------------------------------------------------------------
# Byte by byte
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("begin", [fix.FIX42, fix.FIX44])
def test_reset_forward_moves_the_expected_number_without_a_resend_request(begin):
    data = reset(10, 2, begin)
    for chunks in splits(data):
        client = client_at(2, begin)
        assert feed(client, chunks) == [fs.SequenceReset(10, False)]
        assert client.next_in == 10 and client.data_to_send() == b""
        assert client.state is fs.FixState.ACTIVE
    assert feed(client, [heartbeat_numbered(10, begin)]) == [fs.Heartbeat(None)]
    assert client.next_in == 11
    events = feed(client, [heartbeat_numbered(9, begin)])  # below the new number and no PossDupFlag
    assert isinstance(events[0], fs.SessionError) and "too low" in events[0].text


def test_gap_fill_flag_n_is_reset_mode_too():
    client = client_at(2)
    assert feed(client, [reset(7, 40, gap_fill_no=True)]) == [fs.SequenceReset(7, False)]
    assert client.next_in == 7 and client.data_to_send() == b""


@pytest.mark.parametrize("seq_num, possible_duplicate", [
    (50, False),  # far above the expected number: not a gap
    (1, False),   # below it without PossDupFlag: not "too low"
    (1, True),    # below it with PossDupFlag: not dropped as a duplicate
    (5, True),
])
def test_reset_mode_ignores_msg_seq_num_and_poss_dup(seq_num, possible_duplicate):
    client = client_at(5)
    events = feed(client, [reset(12, seq_num, possible_duplicate=possible_duplicate)])
    assert events == [fs.SequenceReset(12, False)]
    assert client.next_in == 12 and client.state is fs.FixState.ACTIVE
    assert client.data_to_send() == b""  # no ResendRequest, no Logout, no Reject
    assert client._queued == {} and client._resend_pending is False


def test_reset_to_the_expected_number_changes_nothing():
    client = client_at(5)
    assert feed(client, [reset(5, 5)]) == [fs.SequenceReset(5, False)]
    assert client.next_in == 5 and client.data_to_send() == b""


@pytest.mark.parametrize("begin", [fix.FIX42, fix.FIX44])
def test_reset_backward_is_rejected_and_the_expected_number_stays(begin):
    client, server = logged_on(begin)
    for token in ("O1", "O2", "O3"):
        client.receive_data(report(server, token), 0.0)
    assert client.next_in == 5
    data = reset(3, 5, begin)
    for chunks in splits(data):
        c = client_at(5, begin)
        assert feed(c, chunks) == [fs.SequenceResetRefused(3, 5)]
        assert c.next_in == 5 and c.state is fs.FixState.ACTIVE
        reject = c.data_to_send()
        assert reject.count(b"8=FIX") == 1 and b"\x0135=3\x01" in reject
        assert b"\x0145=5\x01" in reject and b"\x01371=36\x01" in reject and b"\x01373=5\x01" in reject
    assert client.receive_data(data, 0.1) == [fs.SequenceResetRefused(3, 5)]
    reject = client.data_to_send()
    events = server.receive_data(reject, 0.1)  # the exchange side reads a well-formed session Reject
    assert len(events) == 1 and isinstance(events[0], fs.RejectReceived)
    assert (events[0].ref_seq_num, events[0].reason) == (5, 5) and "NewSeqNo 3" in events[0].text
    # The session goes on at the number it expected.
    assert [e.get(11) for e in client.receive_data(report(server, "O4"), 0.2)] == ["O4"]
    assert client.next_in == 6 and client.state is fs.FixState.ACTIVE


def test_reset_backward_with_a_zero_new_seq_no_is_rejected():
    client = client_at(3)
    assert feed(client, [reset(0, 3)]) == [fs.SequenceResetRefused(0, 3)]
    assert client.next_in == 3 and b"\x01373=5\x01" in client.data_to_send()


def test_reset_past_a_gap_delivers_what_was_held_once_and_ends_the_recovery():
    client, server = logged_on()
    reports = [report(server, "O%d" % i) for i in range(2, 7)]  # numbered 2..6
    # 2 and 4 are lost; 3 and 5 arrive early and are held behind one ResendRequest
    assert client.receive_data(reports[1] + reports[3], 0.1) == [fs.GapDetected(2, 3)]
    assert b"\x0135=2\x01" in client.data_to_send()
    events = client.receive_data(reset(5, 9), 0.2)  # the exchange cannot resend: it resets to 5
    assert [type(e) for e in events] == [fs.AppMessage, fs.SequenceReset, fs.AppMessage]
    assert [events[0].get(11), events[2].get(11)] == ["O3", "O5"]  # each held message once, in order
    assert events[1] == fs.SequenceReset(5, False)
    assert client.next_in == 6 and client._queued == {} and client._resend_pending is False
    assert client.data_to_send() == b""
    # late resends of 2..4 are duplicates now and dropped; 6 is delivered
    late = [heartbeat_numbered(n, possible_duplicate=True) for n in (2, 3, 4)]
    assert client.receive_data(b"".join(late), 0.3) == []
    assert [e.get(11) for e in client.receive_data(reports[4], 0.3)] == ["O6"]
    # the recovery is over: a new gap gets a new ResendRequest
    lost_seven, eight = report(server, "O7", 0.4), report(server, "O8", 0.4)
    assert lost_seven and client.receive_data(eight, 0.4) == [fs.GapDetected(7, 8)]
    assert b"\x017=7\x01" in client.data_to_send()


def test_reset_inside_a_gap_keeps_waiting_for_the_rest():
    client, server = logged_on()
    reports = [report(server, "O%d" % i) for i in range(2, 6)]  # numbered 2..5
    assert client.receive_data(reports[1] + reports[3], 0.1) == [fs.GapDetected(2, 3)]  # hold 3 and 5
    client.data_to_send()
    events = client.receive_data(reset(4, 2), 0.2)  # skips 2, 3 is delivered, 4 is still missing
    assert [type(e) for e in events] == [fs.AppMessage, fs.SequenceReset]
    assert events[0].get(11) == "O3" and client.next_in == 4 and list(client._queued) == [5]
    assert client._resend_pending is True and client.data_to_send() == b""  # the first request still covers 4
    assert [e.get(11) for e in client.receive_data(reports[2], 0.3)] == ["O4", "O5"]
    assert client.next_in == 6 and client._resend_pending is False


# ------------------------------------------------------------------------------------------------
# Over real TCP: a FixOrderSession against an acceptor the test drives (the simulator never sends
# a reset-mode SequenceReset)
# ------------------------------------------------------------------------------------------------


def receive_until(sock, session, predicate, timeout=3.0):
    """Read from ``sock`` into ``session`` until an event matches ``predicate``; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        for event in session.receive_data(data, time.monotonic()):
            if predicate(event):
                return event
    raise AssertionError("the expected event did not arrive")


def test_reset_forward_and_backward_over_tcp():
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5.0)
    client = FixOrderSession(listener.getsockname(), "CLIENT", heartbeat_interval=5.0, connect_timeout=5.0)
    errors = []

    def log_on():
        try:
            client.connect()
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    thread = threading.Thread(target=log_on)
    thread.start()
    conn = None
    try:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = fs.FixSession("EXCH", "CLIENT", heartbeat_interval=5.0, initiator=False)
        receive_until(conn, server, lambda e: isinstance(e, fs.LoggedOn))
        conn.sendall(server.data_to_send())
        thread.join(5.0)
        assert not thread.is_alive() and errors == []
        assert client.session.next_in == 2

        server.next_out = 20  # the exchange lost its numbers 2..19 and says so with a reset
        conn.sendall(server._encode("sequence_reset", time.monotonic(), 20, seq_num=2)
                     + report(server, "R1", time.monotonic()))
        assert client.wait_for("R1", timeout=3.0).seq_num == 20
        assert client.session.next_in == 21 and client.gaps == [] and client.alive

        conn.sendall(server._encode("sequence_reset", time.monotonic(), 5))  # lower: refused
        client.service(0.5)
        rejected = receive_until(conn, server, lambda e: isinstance(e, fs.RejectReceived))
        assert (rejected.ref_seq_num, rejected.reason) == (21, 5)
        assert client.refused_resets == [fs.SequenceResetRefused(5, 21)]
        assert client.session.next_in == 21  # the refused reset did not take a number either
        # The exchange numbered the refused reset 21, so its next report (22) shows the client a
        # gap: the client asks for 21 again and the exchange gap-fills it.
        conn.sendall(report(server, "R2", time.monotonic()))
        client.service(0.5)
        assert client.gaps == [fs.GapDetected(21, 22)]
        assert receive_until(conn, server, lambda e: isinstance(e, fs.ResendRequested)) == fs.ResendRequested(21, 0)
        conn.sendall(server.data_to_send())
        assert client.wait_for("R2", timeout=3.0).seq_num == 22
        assert client.session.next_in == 23 and client.alive
    finally:
        client.close()
        thread.join(5.0)
        if conn is not None:
            conn.close()
        listener.close()
