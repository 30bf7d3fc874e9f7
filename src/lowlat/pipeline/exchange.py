"""Start the exchange simulator in its own process, so its Python work never takes this one's GIL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

__all__ = ["ExchangeProcess", "pin_process", "split_cpus", "stop_process"]

_CODE = "import sys; from lowlat.exchange import main; sys.exit(main(sys.argv[1:]))"


def pin_process(pid: int, cpus: set[int]) -> None:
    """Restrict every thread of process ``pid`` to ``cpus`` (``sched_setaffinity`` on a pid pins only
    its main thread; the simulator serves from another). Silently nothing where unsupported."""
    if not hasattr(os, "sched_setaffinity") or not cpus:
        return
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        threads = [pid]
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


def stop_process(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """Stop a child process: SIGTERM (after SIGCONT, without which a stopped process would not act
    on it), SIGKILL if it has not exited within ``timeout`` seconds; then close its stdout pipe."""
    if process.poll() is None:
        if hasattr(signal, "SIGCONT"):
            process.send_signal(signal.SIGCONT)
        process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
    if process.stdout is not None:
        process.stdout.close()


def split_cpus() -> tuple[set[int], set[int]] | None:
    """``(session CPU, the others)`` from the CPUs this process may use; None with fewer than two.

    Why split: the kernel wakes a loopback peer on the waker's CPU when it can (wake-affine), so an
    exchange sharing the order session's CPU preempts it inside ``send``: on the 2-vCPU machine
    this was measured at ~38 us per send, against 5-10 us with the exchange on the other CPU.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return {available[-1]}, set(available[:-1])


class ExchangeProcess:
    """``lowlat exchange`` (OUCH 4.2 on SoupBinTCP, the price-time book) on 127.0.0.1, a free port.

    ``start()`` returns once it listens; ``address`` is then its ``(host, port)``; ``stop()``
    terminates it and waits (also on leaving a ``with`` block).
    """

    def __init__(self, busy_poll: bool = False) -> None:
        self.busy_poll = busy_poll
        self.process: subprocess.Popen | None = None
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the simulator listens on; ``RuntimeError`` before ``start()``."""
        if self._address is None:
            raise RuntimeError("the exchange process is not started")
        return self._address

    def start(self) -> "ExchangeProcess":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen([sys.executable, "-c", _CODE, "--port", "0",
                                         *(["--busy-poll"] if self.busy_poll else [])], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "lowlat exchange listening on HOST:PORT"
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"the exchange simulator did not start (said {line!r})")
        host, _, port = line.split()[-1].rpartition(":")
        self._address = (host, int(port))
        return self

    def pin(self, cpus: set[int]) -> None:
        """Keep every thread of the simulator on ``cpus`` (see :func:`split_cpus`)."""
        if self.process is not None:
            pin_process(self.process.pid, cpus)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)

    def __enter__(self) -> "ExchangeProcess":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
