"""Trial bundles: several trials of a grid sweep run by one Ray Tune trial.

Tune's own cost per trial (an actor task, a placement group, results through its event
loop) is the floor under a sweep of many small trials; a bundle pays it once for up to
`bundle.size` trials. Trials that differ only in the keys of the spec's `bundle.by`
(seeds, by default) are grouped, in spec order. The driver sees each member as an
ordinary trial with its own id, attempts and rows (orchestrator/sink.py), plus a `bundle`
column.

A bundle runs its members one after another in one worker, each seeded and reported as
its solo trial would be; or, when the experiment has a fused implementation
(`fn.fused(configs, trials) -> [final metrics, ...]`, one model per member trained at
once), all together. Members' reports reach the driver in batches, one Tune result every
`FLUSH_S` seconds at most.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from orchestrator import devices, oomkill
from orchestrator.context import seed_everything
from orchestrator.errors import InputError
from orchestrator.experiment import Experiment
from orchestrator.messages import Report, to_result
from orchestrator.spec import Bundle
from orchestrator.store import StorageFull
from orchestrator.trainable import (
    Outcome,
    RunContext,
    Shipped,
    attempt,
    ended,
    failed,
    start,
)

BUNDLE_KEY = "__bundle__"  # a bundled Tune trial's config: {BUNDLE_KEY: encode(members)}
ONE_AT_A_TIME = "__one_at_a_time__"  # set after its worker died: send each outcome at once
FLUSH_S = 0.5


class MembersFailed(Exception):
    """Raised by a bundle whose members raised, so that Tune retries it (with only those)."""


def group(configs: dict[str, dict[str, Any]], bundle: Bundle) -> list[list[str]]:
    """The trial ids of `configs` in bundles: same config but for the `by` keys, at most
    `size` each, in the order of `configs`."""
    groups: dict[str, list[str]] = {}
    for tid, config in configs.items():
        rest = {} if bundle.by == "*" else {k: v for k, v in config.items() if k not in bundle.by}
        groups.setdefault(json.dumps(rest, sort_keys=True, default=str), []).append(tid)
    size = bundle.size
    return [ids[i : i + size] for ids in groups.values() for i in range(0, len(ids), size)]


def differing(configs: list[dict[str, Any]], allowed: set[str]) -> list[str]:
    """Config keys whose values differ among `configs`, other than the `allowed` ones."""
    keys = {key for config in configs for key in config}
    return sorted(
        key
        for key in keys - allowed
        if any(config.get(key) != configs[0].get(key) for config in configs)
    )


def check_fusable(
    fn: Experiment, bundles: list[list[str]], configs: dict[str, dict[str, Any]]
) -> None:
    """Refuse, before anything runs, bundles whose members differ in keys that the
    experiment's fused implementation cannot vary (its `varies`, when it says)."""
    varies = fn.varies
    if varies is None:
        return
    for members in bundles:
        if others := differing([configs[tid] for tid in members], set(varies)):
            raise InputError(
                f"bundle.by: the experiment trains a bundle's members fused, and they may "
                f"differ only in {', '.join(sorted(varies))}; these bundles would hold trials "
                f"that differ in {', '.join(others)}. Use bundle.by: {sorted(varies)}"
            )


def encode(members: list[str], bundle_id: str | None = None) -> str:
    """A bundle as one short string in its Tune config: `<bundle id>:<id>,<id>,...`; the
    bundle id is fixed when it is formed and kept when it runs again with fewer members."""
    bundle_id = bundle_id or hashlib.sha1(",".join(members).encode()).hexdigest()[:12]
    return f"{bundle_id}:{','.join(members)}"


def decode(value: str) -> tuple[str, list[str]]:
    bundle_id, _, members = value.partition(":")
    return bundle_id, [m for m in members.split(",") if m]


def make_bundle_trainable(fn: Experiment, ctx: Shipped) -> Callable[[dict[str, Any]], None]:
    def raysweep_bundle(tune_config: dict[str, Any]) -> None:
        flush_s = 0.0 if tune_config.get(ONE_AT_A_TIME) else FLUSH_S
        _, members = decode(tune_config[BUNDLE_KEY])  # the driver keeps the bundle's id
        run_bundle(fn, ctx.get(), members, flush_s)

    return raysweep_bundle


class Outbox:
    """The members' reports, sent to the driver together in one Tune result at most every
    FLUSH_S seconds: a bundle of small trials would otherwise cost a Tune result per step."""

    def __init__(self, flush_s: float = FLUSH_S) -> None:
        self.items: list[Report] = []
        self.flush_s = flush_s
        self.sent = time.monotonic()

    def add(self, report: Report) -> None:
        self.items.append(report)
        if time.monotonic() - self.sent >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        from ray import tune

        if self.items:
            tune.report(to_result(*self.items))
        self.items, self.sent = [], time.monotonic()


def run_bundle(
    fn: Experiment,
    ctx: RunContext,
    members: list[str],
    flush_s: float = FLUSH_S,
) -> None:
    """Run the members, each recorded on its own (the driver knows their bundle); raise
    MembersFailed if some raised and the spec allows retries. None left (all done or out of
    retries when Tune restarted the bundle): nothing to do."""
    if not members:
        return
    outbox = Outbox(flush_s)
    with oomkill.watched():
        try:
            if fn.fused is not None:
                outcomes = _fused(fn.fused, ctx, members, outbox)
            else:
                outcomes = _one_by_one(fn, ctx, members, outbox)
        finally:
            outbox.flush()
    errors = [o.exception for o in outcomes if o.exception is not None]
    full = [e for e in errors if isinstance(e, StorageFull)]
    if full:
        raise full[0]
    if errors and ctx.retries:
        raise MembersFailed(f"{len(errors)} of {len(members)} members failed; they run again")


def _one_by_one(
    fn: Experiment, ctx: RunContext, members: list[str], outbox: Outbox
) -> list[Outcome]:
    outcomes = []
    for tid in members:
        config = dict(ctx.index.configs[tid])
        trial, where, latest = start(ctx, tid, config, outbox.add, member=tid)
        seed_everything(trial.seed)
        outcome = attempt(fn, config, trial, latest)
        outbox.add(outcome.report(where, tid))
        outcomes.append(outcome)
        if isinstance(outcome.exception, StorageFull):
            break  # the driver stops the sweep; the members left run next time
    return outcomes


def _fused(
    fused: Callable[..., Any], ctx: RunContext, members: list[str], outbox: Outbox
) -> list[Outcome]:
    """All members at once through `fused(configs, trials)`; if it raises, every member
    failed with its traceback."""
    configs = [dict(ctx.index.configs[tid]) for tid in members]
    started = [
        start(ctx, tid, config, outbox.add, member=tid)
        for tid, config in zip(members, configs, strict=True)
    ]
    trials = [trial for trial, _, _ in started]
    seed_everything(trials[0].seed)  # the fused code seeds each member's own generators
    try:
        devices.start(trials[0].device)
        finals = fused(configs, trials)
        if not isinstance(finals, list) or len(finals) != len(members):
            raise TypeError(
                f"{fused.__qualname__} returned {type(finals).__name__}; return a list of "
                f"{len(members)} dicts of final metrics, one per trial, in order"
            )
    except Exception as exc:
        outcomes = [failed(trial, exc) for trial in trials]
    else:
        outcomes = [
            ended(trial, latest, final, config)
            for (trial, _, latest), final, config in zip(started, finals, configs, strict=True)
        ]
    for tid, (_, where, _), outcome in zip(members, started, outcomes, strict=True):
        outbox.add(outcome.report(where, tid))
    return outcomes
