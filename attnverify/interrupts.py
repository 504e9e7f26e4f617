"""Ctrl-C and SIGTERM while a command runs: always an exception in the main thread, never lost.

SIGINT raises `KeyboardInterrupt` and SIGTERM `Terminated`, so every ``finally`` and every
atomic write's cleanup runs (no temporary file stays). Python cannot guarantee that such an
exception reaches the command: raised inside a garbage-collector callback (JAX registers one)
it is reported as "ignored", and a bare ``except:`` in a library (JAX's shape code has several)
swallows it; a Ctrl-C during start-up or compilation was then lost and the command ran to
its end. So the signal is sent again every `RESEND_S` seconds until the command has stopped
for it (`Interrupts.acknowledge`), and a command that finished without stopping still reports
the signal (`Interrupts.received`).

Python runs a signal's handler only when the main thread returns to the interpreter. A main
thread that waits inside a compiled program which never returns (a hung XLA computation:
numerics/known_defects.py) or inside a long compilation would never see it, and the command
could not be stopped but by SIGKILL. So the signal is also written to a pipe
(`signal.set_wakeup_fd`) that a watcher thread reads: if the command has not stopped
`GRACE_S` seconds after the first signal, the watcher says so in one line and ends the process
with the signal's exit status (130 or 143). What was finished stays, as after a kill: atomic
writes leave no half-written file, and a results store resumes from its last whole record.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Seconds between deliveries of a signal the command has not yet stopped for.
RESEND_S = 1.0
#: Seconds a command has to stop for a signal before the process ends without it.
GRACE_S = 5.0


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt."""


class Interrupts:
    """Context manager: installs the SIGINT and SIGTERM handlers (main thread only; a SIGINT
    the parent process ignores stays ignored), restores the previous ones on exit."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._done = threading.Event()  # acknowledged, or the command is over: no more resends
        self._previous: dict[int, object] = {}
        self._wakeup: tuple[int, int] | None = None  # (previous wakeup fd, our pipe's write end)

    def __enter__(self) -> Interrupts:
        self._hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
            if self._previous:
                self._watch()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        sys.unraisablehook = self._hook
        if self._wakeup is not None:
            previous, write_end = self._wakeup
            signal.set_wakeup_fd(previous)
            os.close(write_end)  # the watcher reads end-of-file and stops
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _watch(self) -> None:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self._wakeup = (previous, write_end)
        threading.Thread(target=self._watcher, args=(read_end,), name="attnverify-interrupts",
                         daemon=True).start()

    def _watcher(self, read_end: int) -> None:
        """Reads the signals the C-level handler wrote; ends the process if the command has not
        stopped `GRACE_S` seconds after the first SIGINT or SIGTERM."""
        try:
            while data := os.read(read_end, 64):
                signums = [b for b in data if b in self._previous]
                if signums and not self._done.wait(GRACE_S):
                    print(f"attnverify: {'terminated' if signums[0] == signal.SIGTERM else 'interrupted'} "
                          f"(the running computation did not stop within {GRACE_S:g} s; leaving without it)",
                          file=sys.stderr, flush=True)
                    os._exit(128 + signums[0])
        finally:
            os.close(read_end)

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


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive during the block are held, then sent again as it ends, to
    the handlers that were there (a command's `Interrupts`, or Python's own): what is written in it
    (`numerics.modelfile.written_together`'s renames) is never split by them. Only
    the main thread can change handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) not in (signal.SIG_IGN, None):
            previous[signum] = signal.signal(signum, lambda number, frame: held.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            os.kill(os.getpid(), held[0])
