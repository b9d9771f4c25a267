"""Bundles: what each Ray Tune trial of a sweep runs. A solo trial is a bundle of one.

Tune's own cost per trial (an actor task, a placement group, results through its event
loop) is the floor under a sweep of many small trials; a bundle pays it once for up to
`bundle.size` trials. With the spec's `bundle:`, trials that differ only in the keys of
`bundle.by` (seeds, by default) are grouped, in spec order; without it, each grid trial
is a bundle of one. In a search sweep each config a searcher samples is a bundle of its
seeds (labelled with the config's id when there are several). The driver sees each
member as an ordinary trial with its own id, attempts and rows (orchestrator/run/ledger.py),
plus, in a bundled sweep, a `bundle` column.

A bundle runs its members one after another in one worker, each seeded and reported as
it would be alone; or, when the experiment declares a fused implementation
(`fused(configs, trials) -> [final metrics, ...]`, one model per member trained at once),
all together. Members' reports reach the driver in batches, one Tune result every
`FLUSH_S` seconds at most; a bundle of one sends each report at once, its metrics where
Tune's searchers and schedulers look, and fails as its trial fails. Under a scheduler, a
config's seeds send one result per step, when every seed still running reached it, with
the aggregate over them where ASHA looks (orchestrator/objective.py).

This module is the only one that knows how a bundle travels in a Tune config.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.context import seed_everything
from orchestrator.declaration import Experiment
from orchestrator.errors import InputError
from orchestrator.faults import oomkill
from orchestrator.objective import Objective
from orchestrator.spec import Bundle as BundleSpec
from orchestrator.spec import SweepSpec
from orchestrator.store.folder import StorageFull
from orchestrator.trials import TrialIndex, config_id
from orchestrator.worker import devices
from orchestrator.worker.attempt import Outcome, RunContext, Shipped, attempt, ended, failed, start
from orchestrator.worker.messages import Report, to_result

BUNDLE_KEY = "__bundle__"  # a grid sweep's Tune config: {BUNDLE_KEY: "<bundle id>:<id>,<id>"}
ONE_AT_A_TIME = "__one_at_a_time__"  # set after its worker died: send each outcome at once
OURS = (BUNDLE_KEY, ONE_AT_A_TIME)  # a searcher's Tune config holds the sampled config besides
FLUSH_S = 0.5


class MembersFailed(Exception):
    """Raised by a bundle whose members raised, so that Tune retries it (with only those)."""


@dataclass(frozen=True)
class Bundle:
    """The trials one Tune trial runs: their ids and configs, in order."""

    id: str | None  # the trials table's `bundle`: None for a trial of an unbundled sweep
    members: dict[str, dict[str, Any]]  # trial id -> config (the index's own: read only)
    one_at_a_time: bool = False  # its worker died: each outcome is sent as it ends
    seeds: tuple[str, ...] = ()  # a searcher's config: the ids of all its seeds' trials
    config_id: str | None = None  # ... and its config_id

    @property
    def sampled(self) -> bool:
        """The Tune trial is a config a searcher sampled, run with every seed."""
        return bool(self.seeds)

    @property
    def alone(self) -> bool:
        """One trial: this Tune trial is that trial, for Tune's searchers and schedulers."""
        return len(self.members) == 1

    @property
    def sends_at_once(self) -> bool:
        """Each report goes to the driver as it is made (else in batches, the last of which
        dies with a worker that dies)."""
        return self.alone or self.one_at_a_time


def group(
    configs: dict[str, dict[str, Any]], bundle: BundleSpec | None, size: int | None
) -> list[list[str]]:
    """The trial ids of `configs` in bundles: same config but for the `by` keys, at most
    `size` each (None: as many as share the rest of their config), in the order of
    `configs`; without the spec's `bundle`, one each."""
    if bundle is None:
        return [[tid] for tid in configs]
    groups: dict[str, list[str]] = {}
    for tid, config in configs.items():
        rest = {} if bundle.by == "*" else {k: v for k, v in config.items() if k not in bundle.by}
        groups.setdefault(json.dumps(rest, sort_keys=True, default=str), []).append(tid)
    if size is None:
        return list(groups.values())
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


def check_search(fn: Experiment, spec: SweepSpec) -> None:
    """Refuse, before anything runs, a scheduler over configs of several seeds that cannot
    train step by step together: ASHA decides per config on the seeds' aggregate at each
    step, so they must run at once (the experiment's fused implementation)."""
    seeds = len(spec.seed_list)
    if spec.scheduler is None or spec.search.algorithm == "grid" or seeds == 1:
        return
    if fn.fused is None:
        raise InputError(
            f"scheduler: ASHA stops a config on the {spec.search.aggregate} over its {seeds} "
            f"seeds at each step, so its seeds must train together, step by step, and "
            f"experiment {spec.experiment} has no fused implementation (see "
            "docs/experiments.md). Use seeds: 1, remove the scheduler, or give the "
            "experiment a fused implementation"
        )


def param_space(bundles: list[list[str]], labelled: bool) -> dict[str, Any]:
    """Tune's param space of a grid sweep: one Tune trial per bundle. `labelled`: the spec
    bundles trials, and each bundle gets an id for the `bundle` column."""
    from ray import tune

    values = _Shared(_encode(ids, None if labelled else "") for ids in bundles)
    return {BUNDLE_KEY: tune.grid_search(values)}


class _Shared(list):
    """A grid's values, one copy for all. Tune deep-copies the whole param space, this list
    included, for every trial it generates: quadratic in the sweep's size (1.3 s of the
    driver's time at 1,000 trials under cProfile). The values are strings that nothing
    changes."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _Shared:
        return self


def bundle_of(tune_config: dict[str, Any], index: TrialIndex) -> Bundle:
    """The bundle a Tune config carries: a grid sweep's names its members; a config a
    searcher sampled runs with each seed that has no successful row (or, when Tune runs it
    again, those `run_again` named)."""
    bundle_id, ids = _decode(tune_config.get(BUNDLE_KEY, ""))
    one_at_a_time = bool(tune_config.get(ONE_AT_A_TIME))
    sampled = {k: v for k, v in tune_config.items() if k not in OURS}
    if not sampled:
        members = {tid: index.configs[tid] for tid in ids}
        return Bundle(bundle_id or None, members, one_at_a_time)
    seeds = index.seeds_of(sampled)
    again = BUNDLE_KEY in tune_config
    members = {
        tid: config
        for tid, config in seeds.items()
        if tid not in index.done and (not again or tid in ids)
    }
    cid = config_id(index.experiment, next(iter(seeds.values())))
    label = cid if len(seeds) > 1 else None
    return Bundle(label, members, one_at_a_time, tuple(seeds), cid)


def run_again(tune_config: dict[str, Any], ids: list[str]) -> None:
    """What the Tune trial runs when Tune restarts it (Tune restarts it with this config):
    only the members `ids`."""
    bundle_id, _ = _decode(tune_config.get(BUNDLE_KEY, ""))
    tune_config[BUNDLE_KEY] = _encode(ids, bundle_id)


def send_at_once(tune_config: dict[str, Any]) -> None:
    """From its next start on, the Tune trial sends each report as it is made."""
    tune_config[ONE_AT_A_TIME] = True


def _encode(members: list[str], bundle_id: str | None = None) -> str:
    """A bundle as one short string: Tune copies and saves configs often. The id is fixed
    when the bundle is formed ("" for none) and kept when it runs again with fewer members."""
    if bundle_id is None:
        bundle_id = hashlib.sha1(",".join(members).encode()).hexdigest()[:12]
    return f"{bundle_id}:{','.join(members)}"


def _decode(value: str) -> tuple[str, list[str]]:
    bundle_id, _, members = value.partition(":")
    return bundle_id, [m for m in members.split(",") if m]


def make_trainable(fn: Experiment, ctx: Shipped) -> Callable[[dict[str, Any]], None]:
    """The function Ray Tune runs for each of its trials."""

    def raysweep_trial(tune_config: dict[str, Any]) -> None:
        context = ctx.get()
        run_bundle(fn, context, bundle_of(tune_config, context.index))

    return raysweep_trial


class Outbox:
    """The members' reports, sent to the driver together in one Tune result at most every
    `flush_s` seconds: a bundle of small trials would otherwise cost a Tune result per
    step. `alone`: a bundle of one, whose metrics go where Tune's searchers look."""

    def __init__(self, flush_s: float = FLUSH_S, alone: bool = False) -> None:
        self.items: list[Report] = []
        self.flush_s = flush_s
        self.alone = alone
        self.sent = time.monotonic()

    def add(self, report: Report) -> None:
        self.items.append(report)
        if time.monotonic() - self.sent >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        from ray import tune

        items, self.items, self.sent = self.items, [], time.monotonic()
        if items:  # taken first: once Tune stopped the trial, reporting raises
            tune.report(to_result(*items, top=self.alone))


class StepOutbox(Outbox):
    """Under a scheduler, a config's seeds: their reports go to the driver once every seed
    still running reported a step, one Tune result per step, with `step` and the
    objective over the seeds' values at that step where ASHA looks. ASHA then stops the
    config whole, every seed at that step."""

    def __init__(self, members: list[str], objective: Objective) -> None:
        super().__init__(0.0)
        self.objective = objective
        self.running = set(members)
        self.values: dict[int, dict[str, float]] = {}  # step -> trial id -> value

    def add(self, report: Report) -> None:
        from ray import tune

        self.items.append(report)
        value = report.metrics.get(self.objective.metric)
        if report.ends:
            self.running.discard(report.trial_id)
        elif isinstance(value, float):
            self.values.setdefault(int(report.metrics["step"]), {})[report.trial_id] = value
        for step in sorted(self.values):
            if not self.running or not self.running <= self.values[step].keys():
                break
            seeds = self.values.pop(step)
            top = {"step": step, self.objective.metric: self.objective.of(list(seeds.values()))}
            items, self.items = self.items, []
            tune.report({**to_result(*items), **top})


def run_bundle(fn: Experiment, ctx: RunContext, bundle: Bundle) -> None:
    """Run the members, each recorded on its own. A bundle of one raises what its trial
    raised; a larger one raises MembersFailed if some raised and the spec allows retries.
    None left (all done or out of retries when Tune restarted the bundle): nothing to do,
    but for a sampled config, whose searcher the driver then tells its seeds' value
    (orchestrator/run/ledger.py) in an empty result."""
    if not bundle.members:
        if bundle.sampled:
            from ray import tune

            tune.report(to_result())
        return
    outbox = _outbox(bundle, ctx.per_step)
    fused = fn.fused if bundle.id is not None else None
    with oomkill.watched():
        try:
            members = {tid: dict(config) for tid, config in bundle.members.items()}  # theirs
            if fused is not None:
                outcomes = _fused(fused, ctx, members, outbox)
            else:
                outcomes = _one_by_one(fn, ctx, members, outbox)
        finally:
            outbox.flush()
    errors = [o.exception for o in outcomes if o.exception is not None]
    full = [e for e in errors if isinstance(e, StorageFull)]
    if full or (errors and bundle.alone):
        raise (full or errors)[0]
    if errors and ctx.retries:
        raise MembersFailed(
            f"{len(errors)} of {len(bundle.members)} members failed; they run again"
        )


def _outbox(bundle: Bundle, per_step: Objective | None) -> Outbox:
    """How the bundle's reports travel: under a scheduler, a sampled config's seeds step by
    step; a lone trial's at once, where Tune looks (a config down to one seed's: its value
    is the aggregate over the seeds still running); else in batches."""
    if per_step is not None and bundle.sampled and not bundle.alone:
        return StepOutbox(list(bundle.members), per_step)
    return Outbox(0.0 if bundle.sends_at_once else FLUSH_S, bundle.alone)


def _one_by_one(
    fn: Experiment, ctx: RunContext, members: dict[str, dict[str, Any]], outbox: Outbox
) -> list[Outcome]:
    outcomes = []
    for tid, config in members.items():
        started = start(ctx, tid, config, outbox.add)
        seed_everything(started.trial.seed)
        outcome = started.end(attempt(fn, config, started.trial, started.latest))
        outcomes.append(outcome)
        if isinstance(outcome.exception, StorageFull):
            break  # the driver stops the sweep; the members left run next time
    return outcomes


def _fused(
    fused: Callable[..., Any], ctx: RunContext, members: dict[str, dict[str, Any]], outbox: Outbox
) -> list[Outcome]:
    """All members at once through `fused(configs, trials)`; if it raises, every member
    failed with its traceback."""
    configs = list(members.values())
    started = [start(ctx, tid, config, outbox.add) for tid, config in members.items()]
    trials = [s.trial for s in started]
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
            ended(s.trial, s.latest, final, config)
            for s, final, config in zip(started, finals, configs, strict=True)
        ]
    return [s.end(outcome) for s, outcome in zip(started, outcomes, strict=True)]
