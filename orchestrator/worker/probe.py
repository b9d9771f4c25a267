"""The probe behind `bundle: {size: auto}`: how many members a fused bundle should train at once,
measured on one worker of the kind the trials get (orchestrator/autobundle.py starts it).

The experiment's fused implementation runs real member configs (the first n of the sweep's
largest bundle) at n = 1, 2, 4, ... members, up to that bundle's size. It needs no hook of its
own: a step is the time from one `trial.report` of the first member to its next. The first
report comes after whatever warms up (data, the first kernels) and starts the clock; after
`steps` more the report raises `StopProbe`, which ends the call. StopProbe is a
BaseException, so that an experiment's `except Exception:` lets it through. Throughput is
members x steps / seconds; a fused implementation that returns before it reported twice is
timed whole (members / seconds). Peak memory: torch.cuda.max_memory_allocated on CUDA (reset
before each size); on a CPU, how far the worker's resident memory grew (Linux; else not
measured). Nothing a probe does is recorded: its reports and artifacts are dropped.

The rule (`choose`): the largest size, in that order, that fits in the memory budget and
either is at most `floor` (the size that amortises Ray Tune's cost per trial, which fusing
never makes worse) or trained at least `margin` (10%) more member-steps per second in all than
the size before, half as large. Measuring stops at the first size the rule refuses: past the
point where doubling the members stops paying, larger bundles only take more memory and leave
fewer bundles to spread over the workers.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.context import Trial, seed_everything
from orchestrator.worker import devices

STEPS = 3  # steps timed per size
MARGIN = 0.10  # a doubling must add this much throughput to pay past the floor
HEADROOM = 0.85  # the share of a GPU's memory (of its part of it) a bundle may take


class StopProbe(BaseException):
    """Raised by the first member's report once its steps are timed: ends the fused call."""


@dataclass(frozen=True)
class Measured:
    """One size as the probe ran it: member-steps per second (None: it ran out of memory),
    and the most memory it took, in bytes (None: not measured)."""

    size: int
    rate: float | None
    peak: int | None

    def fits(self, budget: float | None) -> bool:
        """It ran to the end, within `budget` bytes (None: any)."""
        within = budget is None or self.peak is None or self.peak <= budget
        return self.rate is not None and within


@dataclass(frozen=True)
class Probe:
    """What a probe measured on its device, and the size the rule chose."""

    device: str
    budget: float | None  # bytes a bundle may take; None: no limit
    measured: list[Measured]
    size: int

    def record(self) -> dict[str, Any]:
        """As sweep.json holds it."""
        return {**asdict(self), "measured": [asdict(m) for m in self.measured]}


def choose(
    measured: list[Measured], floor: int, budget: float | None, margin: float = MARGIN
) -> int:
    """The bundle size the rule picks from sizes measured in increasing order (module
    docstring); 1 when it accepts none."""
    accepted = _accepted(measured, floor, budget, margin)
    return measured[accepted - 1].size if accepted else 1


def _accepted(measured: list[Measured], floor: int, budget: float | None, margin: float) -> int:
    """How many of `measured`, from the first, the rule accepts."""
    for i, m in enumerate(measured):
        if not m.fits(budget):
            return i
        if i and m.size > floor and m.rate < measured[i - 1].rate * (1 + margin):
            return i
    return len(measured)


def sizes(largest: int) -> list[int]:
    """The sizes a probe tries: 1, 2, 4, ... below `largest`, then `largest`."""
    found = [1]
    while found[-1] * 2 < largest:
        found.append(found[-1] * 2)
    return found + [largest] * (largest > 1)


def probe(
    fused: Callable[..., Any],
    configs: list[dict[str, Any]],
    device: str,
    floor: int,
    budget: float | None,
    inputs: dict[str, Any] | None = None,
    steps: int = STEPS,
) -> Probe:
    """Measure `fused` on the first 1, 2, 4, ... of `configs` (one bundle's members) on
    `device` until the rule refuses a size, with a memory `budget` in bytes (None: no
    limit), and choose."""
    measured: list[Measured] = []
    for n in sizes(len(configs)):
        measured.append(measure(fused, configs[:n], device, inputs, steps))
        if _accepted(measured, floor, budget, MARGIN) < len(measured):
            break
    return Probe(device, budget, measured, choose(measured, floor, budget))


def on_worker(
    fused: Callable[..., Any],
    configs: list[dict[str, Any]],
    floor: int,
    gpu_share: float,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`probe` in a Ray worker that asked for what a bundle asks: on its device, within
    HEADROOM of its GPU's memory times `gpu_share` (the spec's resources.gpu, at most 1),
    without a limit on a CPU. Returns the record."""
    import ray

    device = devices.choose(bool(ray.get_gpu_ids()))
    total = devices.describe(device)["gpu_memory_total"]
    budget = None if total is None else HEADROOM * total * min(gpu_share, 1.0)
    return probe(fused, configs, device, floor, budget, inputs).record()


def measure(
    fused: Callable[..., Any],
    configs: list[dict[str, Any]],
    device: str,
    inputs: dict[str, Any] | None = None,
    steps: int = STEPS,
) -> Measured:
    """Run `fused` on `configs` for `steps` steps of its first member: throughput and peak."""
    configs = [dict(config) for config in configs]  # the fused code may change its own
    clock = _Clock(steps)
    reporters = [clock.report] + [_drop] * (len(configs) - 1)
    trials = [
        Trial(f"probe-{i}", config, device, reporter, _discard, inputs)
        for i, (config, reporter) in enumerate(zip(configs, reporters, strict=True))
    ]
    peak = _peak_meter(device)
    seed_everything(trials[0].seed)
    began = time.perf_counter()
    try:
        fused(configs, trials)
    except StopProbe:
        pass
    except Exception as exc:
        if not _out_of_memory(exc):
            raise
        return Measured(len(configs), None, peak())
    return Measured(len(configs), clock.rate(len(configs), began), peak())


class _Clock:
    """The times of the first member's reports; raises StopProbe at the `steps`+1-th."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.times: list[float] = []

    def report(self, metrics: dict[str, Any]) -> None:
        self.times.append(time.perf_counter())
        if len(self.times) > self.steps:
            raise StopProbe

    def rate(self, members: int, began: float) -> float:
        """Member-steps per second between the first report and the last; the whole call's
        members per second if it reported fewer than twice."""
        if len(self.times) < 2:
            return members / (time.perf_counter() - began)
        return members * (len(self.times) - 1) / (self.times[-1] - self.times[0])


def _drop(metrics: dict[str, Any]) -> None:
    """The other members' reports: not recorded."""


def _discard(name: str, obj: Any) -> str:
    """A probe's artifacts: not saved."""
    return ""


def _out_of_memory(exc: Exception) -> bool:
    torch = sys.modules.get("torch")
    return isinstance(exc, MemoryError) or (
        torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)
    )


def _peak_meter(device: str) -> Callable[[], int | None]:
    """Start counting the memory the coming call takes; the function returned says its peak
    so far: on CUDA what torch allocated, on a CPU how far the resident memory grew."""
    devices.start(device)  # CUDA: the peak counters reset, the cache of the size before freed
    if device == "cuda":
        return lambda: devices.usage(device).get("gpu_memory_peak")
    if device != "cpu":
        return lambda: None
    try:
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark back to now
        before = _status("VmRSS")
    except OSError:  # not Linux, or not allowed
        return lambda: None
    return lambda: _status("VmHWM") - before


def _status(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M)[1]) * 1024
