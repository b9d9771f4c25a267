"""Attempts killed by the kernel's OOM killer, told apart from other worker deaths.

Ray's memory monitor says when it kills a worker (failures.py reads that). The kernel's
OOM killer acts when a memory cgroup's limit (a container's, a Slurm job's) or the
machine's memory runs out first; it sends SIGKILL, and Ray reports only that the worker
died. The kernel counts those kills per memory cgroup (`oom_kill` in memory.events on
cgroup v2, in memory.oom_control on v1). So each attempt notes its cgroup's count at
start, in a file on its node named for its actor (`note_start`); when an attempt's worker
dies, the driver asks every live node (`explain`) whether that count has grown since.
A kill of another process in the same cgroup while the attempt ran counts too: both
compete for the same memory.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

CGROUPS = Path("/sys/fs/cgroup")
WAIT_S = 10.0  # how long the driver waits for the nodes' answers


def notes() -> Path:
    """The folder, on each node, that holds one note per running attempt."""
    return Path(tempfile.gettempdir()) / f"raysweep-{os.getuid()}" / "attempts"


def counter_file(proc_cgroup: str) -> Path | None:
    """The file holding the OOM-kill count of the memory cgroup that `/proc/self/cgroup`
    (its text) names: cgroup v1's memory controller if mounted, else the v2 hierarchy."""
    paths = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else ["v2"]:
            paths[name] = path.lstrip("/")
    if "memory" in paths:
        candidate = CGROUPS / "memory" / paths["memory"] / "memory.oom_control"
    elif "v2" in paths:
        candidate = CGROUPS / paths["v2"] / "memory.events"
    else:
        return None
    return candidate if candidate.is_file() else None


@functools.cache
def _own_counter_file() -> Path | None:
    """This worker's counter file, looked up once: its cgroup stays while it lives."""
    return counter_file(Path("/proc/self/cgroup").read_text())


def kills(file: Path) -> int | None:
    """The `oom_kill` count in a memory.events or memory.oom_control file."""
    for line in file.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return None


@contextlib.contextmanager
def watched() -> Iterator[None]:
    """In the trial's worker, around the attempt: its note, removed unless it was killed."""
    note = note_start()
    try:
        yield
    finally:
        if note is not None:
            note.unlink(missing_ok=True)


def note_start() -> Path | None:
    """Note this worker's cgroup OOM-kill count, in a file named for its actor; None where
    the count cannot be read."""
    try:
        file = _own_counter_file()
        count = None if file is None else kills(file)
        if count is None:
            return None
        note = notes() / ray.get_runtime_context().get_actor_id()
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(json.dumps({"file": str(file), "count": count}))
        return note
    except (OSError, ValueError):
        return None


def explain(error: str) -> str | None:
    """On the driver, for an attempt whose worker died (`error` names its actor): the
    kernel's OOM kills in its memory cgroup while it ran, in words, or None."""
    actor = re.search(r"actor_id: ([0-9a-f]+)", error)
    if actor is None:
        return None
    alive = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    asks = [
        _read_note.options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        ).remote(actor.group(1))
        for node in alive
    ]
    done, _ = ray.wait(asks, num_returns=len(asks), timeout=WAIT_S)
    for answer in done:
        try:
            found = ray.get(answer)
        except ray.exceptions.RayError:  # the node went away meanwhile
            continue
        if found:
            return found
    return None


@ray.remote(max_retries=0)
def _read_note(actor_id: str) -> str | None:
    note = notes() / actor_id
    try:
        start = json.loads(note.read_text())
        note.unlink()
        now = kills(Path(start["file"]))
    except (OSError, ValueError, KeyError):
        return None
    if now is None or now <= start["count"]:
        return None
    return (
        f"out of memory: the kernel's OOM killer killed {now - start['count']} process(es) "
        f"in this attempt's memory cgroup ({Path(start['file']).parent}) while it ran"
    )
