"""What a worker tells the driver about an attempt: one `Report` per step, end or error.

Workers build reports (orchestrator/worker/attempt.py) and send them inside Tune results, made
by `to_result` (orchestrator/worker/bundles.py, in batches); the driver's callbacks
(orchestrator/run/ledger.py, orchestrator/faults/limits.py) read them back with `from_result`. Tune
leaves the records whole: it flattens only nested dicts (so they stay out of its
per-metric bookkeeping), and its experiment state keeps the last result pickled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

KEY = "__raysweep__"  # the reports in a Tune result

Kind = Literal["step", "final", "error"]


@dataclass(frozen=True)
class Report:
    """One report of an attempt: a step's metrics, the final metrics, or the error."""

    kind: Kind
    trial_id: str
    metrics: dict[str, Any] = field(default_factory=dict)  # the step's, or the final ones
    columns: dict[str, Any] = field(default_factory=dict)  # trials-table cells: where, what it used
    time: float | None = None  # when a step was reported
    error: str | None = None  # the traceback
    full: str | None = None  # an artifact write found the storage full: what it said
    notices: dict[str, str] = field(default_factory=dict)  # tracker -> how it failed here

    @property
    def ends(self) -> bool:
        return self.kind != "step"


Send = Callable[[Report], None]  # where a worker's reports go: to the driver


def to_result(*reports: Report, top: bool = False) -> dict[str, Any]:
    """What `tune.report` sends: the reports under KEY; with `top` (the Tune trial runs one
    trial), the last one's metrics at the top too, where Tune's searchers, schedulers and
    stoppers look (the members of a larger bundle are not Tune trials: theirs stay inside)."""
    return {**(reports[-1].metrics if top else {}), KEY: reports}


def from_result(result: dict[str, Any]) -> tuple[Report, ...]:
    """The reports a Tune result carries, in the order they were made."""
    return result.get(KEY, ())


def ends_a_trial(result: dict[str, Any]) -> bool:
    """Whether a Tune result carries the end of a trial (a bundle's next member starts)."""
    return any(report.ends for report in from_result(result))
