"""`bundle: {size: auto}`: the bundle size, chosen once before a sweep's bundles first run and
recorded in sweep.json (`auto_bundle`), where later runs of the sweep find it.

The floor amortises Ray Tune's cost per Tune trial, which a bundle pays once: the largest
power of two up to trials / (PER_SLOT x slots), between 1 and CAP, where slots is how many
bundles run at once (the cluster's CPUs and GPUs over the spec's `resources`, and
`max_concurrent`). PER_SLOT bundles per slot keep every worker busy to the end of the sweep
and bound what a dying worker costs; past CAP members, Tune's cost (15-30 ms a Tune trial,
docs/performance.md) is under 1 ms a member, and a larger bundle only reports in larger batches.

- No fused implementation: the bundles run their members one after another, and the floor,
  at most the largest bundle the spec's `by` allows, is the size.
- A fused implementation: the probe (orchestrator/worker/probe.py) runs on one worker that
  asks for what a bundle asks (the spec's `resources`: a GPU when the trials get one),
  measures throughput and peak memory at 1, 2, 4, ... members and picks the size.

A later run reuses the record while the spec's `resources` are those it was chosen for;
`sweep run --reprobe` (`run_sweep(reprobe=True)`) chooses again.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TextIO

from orchestrator.declaration import Experiment
from orchestrator.spec import SweepSpec
from orchestrator.store.folder import now
from orchestrator.worker.bundles import group
from orchestrator.worker.probe import Measured, on_worker

if TYPE_CHECKING:
    from orchestrator.runner import Plan

PER_SLOT = 4  # bundles per slot the floor aims at
CAP = 32  # the floor's largest size


def wanted(spec: SweepSpec) -> bool:
    """The spec asks for `bundle: {size: auto}`."""
    return spec.bundle is not None and spec.bundle.size == "auto"


def recorded(meta: dict[str, Any] | None, spec: SweepSpec) -> dict[str, Any] | None:
    """The choice sweep.json records, if this spec asks for auto with the same resources."""
    found = (meta or {}).get("auto_bundle")
    if not wanted(spec) or not found or found.get("resources") != spec.resources.model_dump():
        return None
    return found


def settle(
    plan: Plan,
    fn: Experiment,
    inputs: dict[str, Any],
    reprobe: bool = False,
    progress: TextIO | None = None,
) -> Plan:
    """The plan with its bundle size chosen, when the spec asks for auto: the recorded one,
    or (none recorded, or `reprobe`) a new choice; says which on `progress`. Needs Ray."""
    if not wanted(plan.spec):
        return plan
    reused = plan.auto is not None and not reprobe
    record = plan.auto if reused else choose(plan, fn, inputs)
    if progress is not None:
        progress.write(f"bundle size: auto -> {record['size']} ({_why(record, reused)})\n")
    return dataclasses.replace(plan, auto=record)


def choose(plan: Plan, fn: Experiment, inputs: dict[str, Any]) -> dict[str, Any]:
    """A new choice for the plan's pending trials, as sweep.json records it."""
    spec = plan.spec
    members = max(group(plan.pending_configs, spec.bundle, None), key=len)
    trials, slots = plan.to_run, _slots(spec)
    floor = min(floor_size(trials, slots), len(members))
    rule, found = "sequential", {"size": floor}
    if fn.fused is not None:
        configs = [plan.configs[tid] for tid in members]
        rule, found = "fused", _probe(spec, fn, configs, floor, inputs)
    return {
        "size": found["size"],
        "rule": rule,
        **found,
        "floor": floor,
        "trials": trials,
        "slots": slots,
        "resources": spec.resources.model_dump(),
        "chosen_at": now(),
    }


def floor_size(trials: int, slots: int) -> int:
    """The largest power of two up to trials / (PER_SLOT x slots), between 1 and CAP."""
    share = int(trials / (PER_SLOT * slots))
    return min(CAP, 1 << max(0, share.bit_length() - 1))


def _slots(spec: SweepSpec) -> int:
    """How many bundles the Ray cluster runs at once: its CPUs and GPUs over what one asks."""
    import ray

    have, res = ray.cluster_resources(), spec.resources
    fits = [
        have.get(name, 0) // asked for name, asked in (("CPU", res.cpu), ("GPU", res.gpu)) if asked
    ]
    at_once = min(fits, default=have.get("CPU", 1))
    return max(1, int(min(at_once, spec.max_concurrent or at_once)))


def _probe(
    spec: SweepSpec,
    fn: Experiment,
    configs: list[dict[str, Any]],
    floor: int,
    inputs: dict[str, Any],
) -> dict[str, Any]:
    """The probe's record, from a Ray task that asks for what a bundle asks. If the fused
    code raised there, the floor, and the first line of the error: the trials then run and
    record their own errors, tracebacks included."""
    import ray

    res = spec.resources
    task = ray.remote(num_cpus=res.cpu, num_gpus=res.gpu, max_retries=0)(on_worker)
    try:
        return ray.get(task.remote(fn.fused, configs, floor, res.gpu, inputs))
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if exc.cause is not None else exc
        return {"size": floor, "failed": f"{type(cause).__name__}: {cause}".splitlines()[0]}


def _why(record: dict[str, Any], reused: bool) -> str:
    """What the choice rests on, in a few words."""
    if reused:
        return (
            f"as chosen at {record['chosen_at']}, recorded in sweep.json; --reprobe chooses again"
        )
    sequential = (
        f"{record['trials']} trials, {record['slots']} bundles at once: about {PER_SLOT} "
        f"bundles each, at most {CAP}"
    )
    if record["rule"] == "sequential":
        return f"no fused implementation; {sequential}"
    if "failed" in record:
        return f"the fused probe failed, {record['failed']}; {sequential}"
    measured = ", ".join(_measured(m, record["budget"]) for m in record["measured"])
    return (
        f"fused probe on {record['device']}, member-steps/s by members: {measured}; "
        f"at least {record['floor']} ({sequential})"
    )


def _measured(m: dict[str, Any], budget: float | None) -> str:
    if Measured(**m).fits(budget):
        return f"{m['size']}: {m['rate']:.3g}"
    if m["rate"] is None:
        return f"{m['size']}: out of memory"
    return f"{m['size']}: {_mib(m['peak'])} over the {_mib(budget)} budget"


def _mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"
