"""What a worker tells the driver about an attempt: one `Report` per step, end or error.

Workers build reports (orchestrator/trainable.py, one by one; orchestrator/bundles.py, in
batches) and send them inside Tune results, made by `to_result`; the driver's callbacks
(orchestrator/sink.py, orchestrator/limits.py) read them back with `from_result`. Tune
leaves the records whole: it flattens only nested dicts (so they stay out of its
per-metric bookkeeping), and its experiment state keeps the last result pickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

KEY = "__raysweep__"  # the reports in a Tune result

Kind = Literal["step", "final", "error"]


@dataclass(frozen=True)
class Report:
    """One report of an attempt: a step's metrics, the final metrics, or the error."""

    kind: Kind
    metrics: dict[str, Any] = field(default_factory=dict)  # the step's, or the final ones
    columns: dict[str, Any] = field(default_factory=dict)  # trials-table cells: where, what it used
    member: str | None = None  # the trial's id when a bundle runs it
    time: float | None = None  # when a step was reported
    error: str | None = None  # the traceback
    full: str | None = None  # an artifact write found the storage full: what it said

    @property
    def ends(self) -> bool:
        return self.kind != "step"


def to_result(*reports: Report) -> dict[str, Any]:
    """What `tune.report` sends: the reports under KEY, and a trial's own report's metrics
    at the top too, where Tune's searchers, schedulers and stoppers look (a bundle's members
    are not Tune trials: theirs stay inside)."""
    top = reports[0].metrics if len(reports) == 1 and reports[0].member is None else {}
    return {**top, KEY: reports}


def from_result(result: dict[str, Any]) -> tuple[Report, ...]:
    """The reports a Tune result carries, in the order they were made."""
    return result.get(KEY, ())


def member_ended(result: dict[str, Any]) -> bool:
    """Whether a Tune result of a bundle carries the end of a member."""
    return any(report.ends and report.member is not None for report in from_result(result))
