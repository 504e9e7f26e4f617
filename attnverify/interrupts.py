"""Ctrl-C and SIGTERM while a command runs: always an exception in the main thread, never lost.

SIGINT raises `KeyboardInterrupt` and SIGTERM `Terminated`, so every ``finally`` and every
atomic write's cleanup runs (no temporary file stays). Python cannot guarantee that such an
exception reaches the command: raised inside a garbage-collector callback (JAX registers one)
it is reported as "ignored", and a bare ``except:`` in a library (JAX's shape code has several)
swallows it; a Ctrl-C during start-up or compilation was then lost and the command ran to
its end. So the signal is sent again every `RESEND_S` seconds until the command has stopped
for it (`Interrupts.acknowledge`), and a command that finished without stopping still reports
the signal (`Interrupts.received`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

#: Seconds between deliveries of a signal the command has not yet stopped for.
RESEND_S = 1.0


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt."""


class Interrupts:
    """Context manager: installs the SIGINT and SIGTERM handlers (main thread only; a SIGINT
    the parent process ignores stays ignored), restores the previous ones on exit."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._done = threading.Event()  # acknowledged, or the command is over: no more resends
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        self._hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        sys.unraisablehook = self._hook
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def acknowledge(self) -> None:
        """The command stopped for the signal: stop sending it again."""
        self._done.set()

    def _handle(self, signum, frame):
        if self._done.is_set():  # already stopping for a signal: a second Ctrl-C changes nothing
            return
        self.received = signum
        resend = threading.Timer(RESEND_S, self._again, (signum,))
        resend.daemon = True
        resend.start()
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    def _unraisable(self, unraisable) -> None:
        """A swallowed signal exception is not an error to print (a traceback on stderr): it is
        delivered again. Anything else goes to the previous hook."""
        if not isinstance(unraisable.exc_value, KeyboardInterrupt | Terminated):
            self._hook(unraisable)

    def _again(self, signum: int) -> None:
        if not self._done.is_set():
            os.kill(os.getpid(), signum)
