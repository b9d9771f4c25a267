"""A report's figures drawn in parallel: helper processes turn `plots.Sketch`es into PNG
while this process computes the next sections, and then draws beside them.

Helpers are fresh interpreters (`python -c ...`), not multiprocessing's workers: spawn
and forkserver import the caller's `__main__` in every worker, which runs a script's top
level again when it has no `if __name__ == "__main__":` guard (write_report is called from
plain scripts), and fork is unsafe once Ray or any other thread runs. A helper is sent
this process's sys.path, so it imports the same `analysis`, then sketches one at a time
over its stdin and stdout (pickles), each by a thread of this process. It imports
matplotlib and pandas as soon as it starts (about half a second), so starting helpers
before the analysis hides that.

A sketch a helper could not draw (an error, a helper gone, arguments that do not pickle)
is drawn again here, so a figure's own error is raised as it would be without helpers.
Warnings a helper's drawing raises are raised again here, under this process's filters.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import Future
from types import TracebackType

from matplotlib.figure import Figure

from analysis.plots import Sketch, png


def _cpus() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Helpers beside this process: one per further CPU, at most 3 (a report has about 15
# figures; each helper costs about half a second of CPU to start).
HELPERS = max(0, min(3, _cpus() - 1))

_START = (
    "import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
    "from analysis.painters import serve; serve()"
)

# A helper's answer: the PNG (None when it could not draw it) and the warnings raised.
Reply = tuple[bytes | None, list[tuple[str, type[Warning]]]]
Job = tuple[Sketch, "Future[Reply]"]


class Painters:
    """`helpers` helper processes, started now. `start` hands them sketches to draw;
    `draw` returns every figure as PNG, drawing here what no helper has taken. A context
    manager: leaving it ends the helpers."""

    def __init__(self, helpers: int = HELPERS) -> None:
        started = [_Helper.start() for _ in range(helpers if sys.executable else 0)]
        self._helpers = [h for h in started if h is not None]
        self._pending: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._replies: dict[Sketch, Future[Reply]] = {}
        self._threads = [
            threading.Thread(target=h.work, args=(self._pending,), name="painter", daemon=True)
            for h in self._helpers
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> Painters:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, figures: Sequence[Figure | Sketch]) -> None:
        """Queue the sketches among `figures` for the helpers (none without helpers)."""
        for sketch in figures:
            if self._helpers and isinstance(sketch, Sketch) and sketch not in self._replies:
                self._replies[sketch] = Future()
                self._pending.put((sketch, self._replies[sketch]))

    def draw(self, figures: Sequence[Figure | Sketch]) -> list[bytes]:
        """Each figure as PNG, in order: the ones already built and the sketches no helper
        has taken yet are drawn here, while the helpers draw theirs."""
        self.start(figures)
        drawn = {id(f): png(f) for f in figures if isinstance(f, Figure)}
        while (job := _next(self._pending)) is not None:
            sketch, reply = job
            reply.set_result((png(sketch.draw()), []))
        return [drawn[id(f)] if id(f) in drawn else self._result(f) for f in figures]

    def _result(self, sketch: Sketch) -> bytes:
        """A helper's PNG with its warnings raised here; the sketch drawn here when no
        helper had it or one could not draw it."""
        data, caught = self._replies[sketch].result() if sketch in self._replies else (None, [])
        if data is None:
            return png(sketch.draw())
        for message, category in caught:
            warnings.warn(message, category, stacklevel=2)
        return data

    def close(self) -> None:
        """Let the helpers finish what they are drawing, then end them."""
        while _next(self._pending) is not None:  # left over after an error: not drawn
            pass
        for _ in self._threads:
            self._pending.put(None)
        for thread in self._threads:
            thread.join()
        for helper in self._helpers:
            helper.close()


def _next(pending: queue.SimpleQueue[Job | None]) -> Job | None:
    try:
        return pending.get_nowait()
    except queue.Empty:
        return None


class _Helper:
    """One helper process and the pipes to it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process, self.alive = process, True
        self._send(sys.path)

    @classmethod
    def start(cls) -> _Helper | None:
        """A new helper, or None when no process can be started (this one draws alone)."""
        try:
            command = [sys.executable, "-c", _START]
            return cls(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        except OSError:
            return None

    def work(self, pending: queue.SimpleQueue[Job | None]) -> None:
        """A thread's loop: draw queued sketches until told to stop (None)."""
        while (job := pending.get()) is not None:
            sketch, reply = job
            reply.set_result(self._draw(sketch))

    def _draw(self, sketch: Sketch) -> Reply:
        if self.alive and self._send(sketch):
            try:
                return pickle.load(self.process.stdout)  # type: ignore[arg-type]
            except (OSError, EOFError, pickle.UnpicklingError):
                self.alive = False
        return None, []

    def _send(self, item: object) -> bool:
        """Pickled whole first: what does not pickle is not sent (and drawn by the caller)."""
        try:
            data = pickle.dumps(item)
        except Exception:  # noqa: BLE001 - whatever a sketch's arguments raise
            return False
        try:
            self.process.stdin.write(data)  # type: ignore[union-attr]
            self.process.stdin.flush()  # type: ignore[union-attr]
        except OSError:
            self.alive = False
        return self.alive

    def close(self) -> None:
        """Its stdin closed, the helper exits; one that does not is killed."""
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                pipe.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve() -> None:
    """A helper's loop: a sketch in on stdin, a `Reply` out on stdout, until stdin ends.

    Stray prints go to stderr (stdout carries the replies); Ctrl-C is the caller's to
    handle: it closes stdin, which ends this loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    while True:
        try:
            sketch = pickle.load(sys.stdin.buffer)
        except EOFError:
            return
        replies.write(pickle.dumps(_reply(sketch)))
        replies.flush()


def _reply(sketch: Sketch) -> Reply:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = png(sketch.draw())
        except Exception:  # noqa: BLE001 - drawn again by the caller, which raises it there
            data = None
    return data, [(str(w.message), w.category) for w in caught]
