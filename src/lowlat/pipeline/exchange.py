"""Start the exchange simulator in its own process, so its Python work never takes this one's GIL."""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["ExchangeProcess"]

_CODE = "import sys; from lowlat.exchange import main; sys.exit(main(sys.argv[1:]))"


class ExchangeProcess:
    """``lowlat exchange`` (OUCH 4.2 on SoupBinTCP, the price-time book) on 127.0.0.1, a free port.

    ``start()`` returns once it listens; ``address`` is then its ``(host, port)``; ``stop()``
    terminates it and waits (also on leaving a ``with`` block).
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.address: tuple[str, int] | None = None

    def start(self) -> "ExchangeProcess":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen([sys.executable, "-c", _CODE, "--port", "0"], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, env=env)
        line = self.process.stdout.readline()  # "lowlat exchange listening on HOST:PORT"
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"the exchange simulator did not start (said {line!r})")
        host, _, port = line.split()[-1].rpartition(":")
        self.address = (host, int(port))
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> "ExchangeProcess":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
