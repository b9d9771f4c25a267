"""`sweep`: run sweeps from YAML specs and look at their results.

Bad input exits with code 2 and a message saying what, where and what to do.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pandas as pd

from analysis.errors import AnalysisError
from analysis.tables import Status, UnreadableFileWarning
from orchestrator.errors import InputError, TrialsCannotStart
from orchestrator.params import describe
from orchestrator.registry import available, resolve
from orchestrator.spec import seconds
from orchestrator.store.compaction import TARGET_BYTES, compact, parse_size
from orchestrator.store.folder import StorageFull, store_at
from orchestrator.summary import ls_table, status_text
from orchestrator.trackers import TRACKERS

if TYPE_CHECKING:  # the runner imports Ray Tune: only `sweep run` pays for it
    from orchestrator.runner import Plan, SweepResult

EXIT_TRIALS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STORAGE_FULL = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
WATCH_EVERY_S = 5.0  # sweep status --watch: seconds between reads


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (InputError, AnalysisError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except StorageFull as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_STORAGE_FULL)
        except TrialsCannotStart as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_TRIALS_FAILED)


_python_warning = warnings.formatwarning


def _warning_text(message: Warning | str, category: type[Warning], *where: object) -> str:
    """Unreadable files as `warning: ...` lines on stderr; other warnings as Python shows them."""
    if issubclass(category, UnreadableFileWarning):
        return f"warning: {message}\n"
    return _python_warning(message, category, *where)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Run ML experiment sweeps on Ray Tune; every trial lands in Parquet.

    \b
    sweep run spec.yaml                  run a sweep (again: resume, retry, extend)
    sweep run spec.yaml --dry-run        the trials it would run
    sweep status results/NAME            counts, failures, GPU memory, trials
    sweep status results/NAME --watch    a live view until the sweep ends
    sweep report results/NAME            statistics and figures: report.html
    sweep confirm results/NAME --top 3 --seeds 5   the best configs again on fresh seeds
    sweep power results/NAME --metric M --by KEY   how many seeds a difference needs
    sweep experiments                    what `experiment:` can name

    `sweep COMMAND --help` for each. Bad input exits 2 with a message naming the key,
    before anything is written.
    """
    warnings.formatwarning = _warning_text


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a spec key as if the file said it (repeatable; dotted keys, YAML values), "
    "checked as the file is: --set seeds=5, --set grid.lr=[0.1,0.3], --set params.steps=50, "
    "--set resources.gpu=0.25.",
)
@click.option("--dry-run", is_flag=True, help="Print the trials it would run, and run nothing.")
@click.option(
    "--address",
    default=None,
    metavar="auto|HOST:PORT|local",
    help="Join a Ray cluster started with `ray start --head`; default: the cluster RAY_ADDRESS "
    "names (as inside `ray job submit`), else an embedded local Ray; local: always embedded.",
)
@click.option(
    "--log",
    "trackers",
    multiple=True,
    type=click.Choice(TRACKERS),
    help="Log every trial to this tracker as it runs (repeatable), instead of the spec's "
    "`log:`; needs pip install 'raysweep[NAME]'. Settings as the tracker reads them: "
    "MLFLOW_TRACKING_URI, WANDB_MODE, WANDB_DIR, WANDB_PROJECT.",
)
@click.option(
    "--reprobe",
    is_flag=True,
    help="With `bundle: {size: auto}`: choose the bundle size again (a new probe) rather than "
    "reuse the one sweep.json records.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
def run(
    spec: Path,
    overrides: tuple[str, ...],
    dry_run: bool,
    address: str | None,
    trackers: tuple[str, ...],
    reprobe: bool,
    quiet: bool,
) -> None:
    """Run the sweep in SPEC (YAML); trials that already succeeded are skipped.

    Run it again to resume after a crash or retry failed trials; add seeds or
    grid values to the spec to extend the sweep. Exit code: 0 when every trial
    succeeded, 1 when some failed (they are recorded; run again to retry them) or the
    sweep stopped because its trials could not start, 2 for bad input (nothing was
    written), 3 when the storage's disk is full (free space, then run again: finished
    trials are kept), 130 when it was interrupted (Ctrl-C, SIGTERM, `ray job stop`: run
    it again to finish; nothing recorded is lost), 137 when Ray had not let it in after
    `limits.start_time` (nothing was written).

    Limits per attempt go in the spec, `limits: {trial_time: 2h, report_gap: 10m}`: an
    attempt past either is stopped, recorded as `timeout` and retried per `retries`.
    `limits.start_time` (default 5m): how long trials may hold resources with no Ray worker
    started for them (nodes whose Python cannot start one) before the sweep stops.

    Many small trials: `bundle: {size: 16, by: [seed]}` in the spec runs up to 16 trials
    that differ only in their seeds in one Ray Tune trial, one after another or (for an
    experiment with a fused implementation) trained together; each is still its own
    trial in the results. --dry-run shows the bundles. `size: auto` chooses the size before
    the bundles first run (a probe of the fused implementation) and records it in sweep.json;
    later runs reuse it, unless --reprobe.

    Trackers: `log: [tensorboard, mlflow, wandb]` in the spec (or --log) sends each trial's
    config, steps, final metrics and status to them as it runs, a tracker run per trial
    grouped by sweep and config; the tables stay the record if a tracker fails.
    """
    from orchestrator.runner import Plan, run_sweep

    logged = [f"log=[{','.join(trackers)}]"] if trackers else []
    outcome = run_sweep(
        spec,
        overrides=[*overrides, *logged],
        address=address,
        dry_run=dry_run,
        progress=None if quiet else sys.stderr,
        reprobe=reprobe,
    )
    if isinstance(outcome, Plan):
        click.echo(_describe_plan(outcome))
        return
    _outcome(outcome)


def _outcome(outcome: SweepResult) -> None:
    """What a run did, on stdout; its exit code (1, 130) when not all went well."""
    unsuccessful = "".join(
        f", {n} {status}" for status in (Status.TIMEOUT, Status.OOM) if (n := outcome.count(status))
    )
    click.echo(
        f"{outcome.total} trials: {outcome.skipped} already done, ran {len(outcome.rows)} attempts "
        f"({outcome.count(Status.OK)} ok, {outcome.count(Status.FAILED)} failed{unsuccessful}, "
        f"{outcome.count(Status.STOPPED)} stopped early)"
        + (" - interrupted; run again to finish" if outcome.interrupted else "")
    )
    for line in outcome.decisions:
        click.echo(line)
    click.echo(f"results: {outcome.path}   (sweep status {outcome.path})")
    if outcome.after_sweep:
        click.echo(f"after the trials: {outcome.after_sweep}")
    if outcome.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if outcome.after_sweep_error:
        click.echo("the experiment's after_sweep step failed (see above)", err=True)
        sys.exit(EXIT_TRIALS_FAILED)
    if outcome.failed_trials:
        click.echo(f"{len(outcome.failed_trials)} trials failed; see sweep status", err=True)
        sys.exit(EXIT_TRIALS_FAILED)


def _describe_plan(plan: Plan) -> str:
    spec = plan.spec
    res = spec.resources
    each, count = ("bundle", len(plan.bundles)) if spec.bundle else ("trial", plan.to_run)
    if plan.searching:
        each, count = "config (its seeds)", plan.searched.samples
    lines = [
        f"sweep {spec.name}: experiment {spec.experiment}, storage {plan.store.uri}",
        f"trials: {plan.total} in all, {plan.total - plan.to_run} already done, "
        f"{plan.to_run} to run",
        *_bundle_lines(plan),
        f"resources per {each}: {res.cpu:g} CPU, {res.gpu:g} GPU"
        f"  (all at once: {res.cpu * count:g} CPU, {res.gpu * count:g} GPU)",
        f"retries: {spec.retries}   max concurrent: {spec.max_concurrent or 'as resources allow'}",
    ]
    if plan.params is None:
        lines.append(
            f"parameters: unchecked (experiment {spec.experiment} declares none; see "
            "@parameters in docs/experiments.md): trials get params and grid values as written"
        )
    if plan.searching:
        lines += _search_lines(plan)
    else:
        lines += _trials_table(plan.table())
    return "\n".join(lines)


def _search_lines(plan: Plan) -> list[str]:
    """What a search sweep samples: configs, each with every seed, as one Ray Tune trial."""
    spec, searched = plan.spec, plan.searched
    search, seeds = spec.search, spec.seed_list
    sampled = searched.samples - len(searched.unfinished)
    how = "fused into one model" if plan.fused and len(seeds) > 1 else "one after another"
    told = (
        f"it is told the {search.aggregate} of {search.metric} over each config's seeds"
        if search.metric
        else "it is told nothing (no metric)"
    )
    return [
        f"search: {search.algorithm}, {search.num_samples} configs in all, each with "
        f"{len(seeds)} seeds {seeds} ({plan.total} trials); {told}",
        f"this run: {searched.samples} configs ({len(searched.unfinished)} sampled before "
        f"that lack seeds, run first; {sampled} new) = {plan.to_run} trials; "
        f"{len(searched.finished)} finished configs known to the searcher",
        f"each config's seeds run as one Ray Tune trial, {how}",
        f"sampling from: {dict(spec.grid)}   params: {dict(spec.params)}",
    ]


def _bundle_lines(plan: Plan) -> list[str]:
    bundle = plan.spec.bundle
    if bundle is None:
        return []
    by = "any key" if bundle.by == "*" else ", ".join(bundle.by)
    how = "fused into one model" if plan.fused else "one after another"
    size = plan.bundle_size
    lines = [
        f"bundles: {len(plan.bundles)} (up to {size or 'all'} trials differing only in {by}), "
        f"each one Ray Tune trial; members run {how} (column `bundle` below)"
    ]
    if bundle.size == "auto":
        lines.append(
            f"bundle size auto: {size}, as sweep.json records (--reprobe chooses again)"
            if size
            else "bundle size auto: chosen when the sweep runs; listed here at their largest"
        )
    return lines


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _trials_table(table: pd.DataFrame) -> list[str]:
    """The values every trial shares on one line, then a row per trial of the rest."""
    config = [c for c in table.columns if c not in ("trial_id", "state")]
    fixed = [c for c in config if len(table) > 1 and table[c].nunique(dropna=False) == 1]
    shared = ", ".join(f"{c}={_shown(table[c].iloc[0])}" for c in fixed)
    return ([f"every trial: {shared}"] if shared else []) + [
        table.drop(columns=fixed).to_string(index=False, max_colwidth=30)
    ]


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--trial", "trial_id", metavar="ID", help="The trial to run, by id (--dry-run lists them)."
)
@click.option(
    "--where",
    multiple=True,
    metavar="KEY=VALUE",
    help="Run the first trial whose config has KEY=VALUE (repeatable): --where seed=2.",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="As for sweep run.")
@click.option(
    "--pdb", "post_mortem", is_flag=True, help="On an exception, open pdb where it was raised."
)
def debug(
    spec: Path,
    trial_id: str | None,
    where: tuple[str, ...],
    overrides: tuple[str, ...],
    post_mortem: bool,
) -> None:
    """Run one trial of SPEC in this process, without Ray, to debug an experiment.

    The trial (--trial ID, the first matching --where, else the spec's first) runs as a
    worker would run it (its config with the declared defaults, seeded, on the device a
    worker would get) but here: `breakpoint()` works, reports are printed as they come and
    the final metrics at full precision. Nothing is written to the sweep's tables;
    artifacts go to a scratch folder it names. Exit code: 0 when the trial returned its
    metrics, 1 when it raised (traceback printed; --pdb opens the debugger), 2 for bad input.
    """
    from orchestrator.debug import debug as run_one

    pairs = {}
    for item in where:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--where {item!r}: give KEY=VALUE")
        pairs[key] = value
    code = run_one(spec, list(overrides), trial_id, pairs, post_mortem)
    sys.exit(code)


@main.command(name="ls")
@click.argument("root", default="results", metavar="[ROOT]")
def ls_(root: str) -> None:
    """List the sweeps under ROOT, a folder or a URI (default: results/).

    One line per sweep: its experiment, trials ok / failed / total, when it started and
    when it was last written. `sweep status SWEEP_DIR` shows one of them in full.
    """
    table = ls_table(root)
    if table.empty:
        click.echo(f"no sweeps under {root}/")
        return
    click.echo(table.to_string(index=False))


class Duration(click.ParamType):
    """Seconds, or a duration with a unit: 1, 0.5, 500ms, 5s, 1m."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            return seconds(value)
        except ValueError:
            self.fail(f"{value!r}: give seconds (1, 0.5) or a duration (500ms, 5s, 1m)", param, ctx)


@main.command()
@click.argument("sweep_dir", metavar="SWEEP_DIR")
@click.option(
    "--watch",
    is_flag=True,
    help="A live view until the sweep ends: counts and ETA, running trials with their last "
    "step, the newest failures, the best configs so far. Ctrl-C stops it.",
)
@click.option(
    "--every",
    type=Duration(),
    default=None,
    metavar="DURATION",
    help="How often --watch reads the tables: seconds or 500ms, 5s, 1m (default 5s); "
    "implies --watch.",
)
@click.option(
    "--metric",
    default=None,
    metavar="METRIC",
    help="With --watch: the final metric the best configs are ranked by (default: the "
    "spec's search.metric, else its report settings', else the first numeric one).",
)
@click.option(
    "--mode",
    type=click.Choice(["min", "max"]),
    default=None,
    help="With --watch: whether METRIC is better low (min) or high (max); default: "
    "search.mode, else report.directions, else min.",
)
def status(
    sweep_dir: str, watch: bool, every: float | None, metric: str | None, mode: str | None
) -> None:
    """Show one sweep, SWEEP_DIR a folder or a URI (s3://bucket/results/name).

    Counts (ok, failed, not run), each run with its git commit, failed trials with their
    errors, NaN/Inf metric values, GPU memory per attempt, and the trials. Safe to run
    while the sweep runs.

    With --watch (or --every): a live view, read from the tables every few seconds, that
    ends by itself (exit 0) when the sweep's run ends; redrawn in place on a terminal,
    printed again when it changed in a log.
    """
    watching = watch or every is not None
    if not watching and (metric or mode):
        raise click.UsageError("--metric and --mode go with --watch")
    store = store_at(sweep_dir)
    if not store.exists():
        raise InputError(f"{sweep_dir}: not a sweep folder (no sweep.json); see `sweep ls`")
    if watching:
        from orchestrator.watch import watch as live

        live(sweep_dir, every or WATCH_EVERY_S, metric, mode)
        return
    click.echo(status_text(store))


@main.command(name="compact")
@click.argument("sweep_dir", metavar="SWEEP_DIR")
@click.option(
    "--target-size",
    default=f"{TARGET_BYTES // 2**20}MB",
    show_default=True,
    metavar="SIZE",
    help="Size of the files to write (KB, MB, GB: powers of 1024); smaller tables: one file.",
)
def compact_(sweep_dir: str, target_size: str) -> None:
    """Rewrite a sweep's tables into few large files, for faster reading; rows, values and
    types stay as they were.

    `sweep run` does this at the end of every run that finishes (set RAYSWEEP_COMPACT=0 to
    leave the tables as written). Readers see the old files or the new ones, never both;
    a compaction killed midway leaves the tables as they were, or compacted. Local storage
    on Linux or macOS only; refused while a run of the sweep is writing it.
    """
    store = store_at(sweep_dir)
    if not store.exists():
        raise InputError(f"{sweep_dir}: not a sweep folder (no sweep.json); see `sweep ls`")
    for table, (before, after) in compact(store, parse_size(target_size)).items():
        click.echo(f"{table}: {before} files -> {after}")


@main.command()
@click.argument("name", required=False)
def experiments(name: str | None) -> None:
    """List the experiments `experiment:` can name; with NAME, that one's parameters.

    NAME is a registered name or module:function (a module in this folder works too).
    Its parameters are listed with type, bounds, default and help: what `params:` and
    `grid:` may set.
    """
    if name is None:
        for known, where in available().items():
            click.echo(f"{known:<24} {where}")
        return
    params = resolve(name, [Path.cwd()]).params
    if params is None:
        click.echo(f"{name} declares no parameters: its params and grid values are unchecked")
        return
    rows = [{"name": "name", "type": "type", "default": "default", "help": ""}, *describe(params)]
    widths = {key: max(len(row[key]) for row in rows) for key in ("name", "type", "default")}
    for row in rows:
        cells = [row[key].ljust(width) for key, width in widths.items()]
        click.echo("  ".join([*cells, row["help"]]).rstrip())


_SETTINGS_OPTIONS = [
    click.option(
        "--lower",
        multiple=True,
        metavar="METRIC",
        help="METRIC is better when lower (adds to the spec's report.directions).",
    ),
    click.option("--higher", multiple=True, metavar="METRIC", help="METRIC is better when higher."),
    click.option(
        "--metric",
        "metrics",
        multiple=True,
        metavar="METRIC",
        help="Analyse these final metrics only (default: the spec's report.metrics, "
        "or every numeric one).",
    ),
    click.option(
        "--weights",
        default=None,
        metavar="NAME=W,...",
        help="A custom ranking profile: weights per metric or criterion, "
        "e.g. val_loss=0.7,tokens_per_s=0.3.",
    ),
    click.option("--quiet", "-q", is_flag=True, help="No progress lines."),
]


def _report_options(default_out: str) -> Callable[[Callable], Callable]:
    """--out and the report settings options, shared by report and compare."""
    out = click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"Folder for the report (default: {default_out}); replaced whole.",
    )

    def add(command: Callable) -> Callable:
        for option in reversed([out, *_SETTINGS_OPTIONS]):
            command = option(command)
        return command

    return add


@main.command()
@click.argument("sweep_dir", metavar="SWEEP_DIR")
@_report_options("SWEEP_DIR/report, or ./<sweep>/report for a bucket")
def report(sweep_dir: str, out: Path | None, **options: object) -> None:
    """Write the report of a sweep: report.html (self-contained), report.md, CSV, PNG.
    SWEEP_DIR is a folder or a URI (s3://bucket/results/name).

    Aggregates over seeds with 95% intervals, checks (failed trials, NaN/Inf,
    losses that did not go down, missing seeds), rankings, significance tests,
    findings, distributions and curves. Regenerate it any time.
    """
    from orchestrator import reporting  # scipy and matplotlib: only when needed

    folder = reporting.report(sweep_dir, out, **options)
    click.echo(f"report: {folder / 'report.html'}")


@main.command()
@click.argument("sweep_dir", metavar="SWEEP_DIR")
@click.option(
    "--top",
    type=click.IntRange(min=1),
    required=True,
    metavar="K",
    help="How many of the best configs to run again (ranked by their mean over seeds).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    required=True,
    metavar="N",
    help="Fresh seeds per config: N seeds after the largest seed SWEEP_DIR used or lists.",
)
@click.option(
    "--metric",
    default=None,
    metavar="METRIC",
    help="The final metric to rank by (default: the spec's search.metric, else the first "
    "of report.metrics, else the one metric of report.directions).",
)
@click.option(
    "--mode",
    type=click.Choice(["min", "max"]),
    default=None,
    help="Whether METRIC is better low (min) or high (max); default: search.mode, else "
    "report.directions (lower: min, higher: max).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the linked sweep's spec (YAML), and run nothing."
)
@click.option(
    "--address",
    default=None,
    metavar="auto|HOST:PORT|local",
    help="The Ray cluster to run on, as for `sweep run`.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
def confirm(
    sweep_dir: str,
    top: int,
    seeds: int,
    metric: str | None,
    mode: str | None,
    dry_run: bool,
    address: str | None,
    quiet: bool,
) -> None:
    """Run the K best configs of SWEEP_DIR again on N fresh seeds, as a linked sweep.

    \b
    sweep confirm results/regression --top 3 --seeds 5
    sweep confirm results/regression --top 1 --seeds 10 --metric val_loss --mode min --dry-run

    The best config of a sweep is a best-of-K pick whose mean and interval come from the
    data that chose it, so both flatter it. The configs (successful trials grouped by
    config without the seed) are ranked by the mean of METRIC over their seeds; the K best
    run again on seeds SWEEP_DIR never used, as the sweep <name>-confirm in the same
    storage: the same experiment, resources, limits, retries and bundle, and
    `confirms: {sweep, metric, mode, top}` in its spec. Run it again to resume or extend
    it (more seeds, a larger K). `sweep report SWEEP_DIR` then shows each confirmed
    config's original estimate beside its fresh-seed one. Exit codes as `sweep run`.
    """
    import yaml

    from orchestrator.confirm import confirmation
    from orchestrator.runner import Plan, run_sweep

    linked = confirmation(sweep_dir, top, seeds, metric, mode)
    text = yaml.safe_dump(linked.spec, sort_keys=False, default_flow_style=None)
    outcome = run_sweep(
        linked.spec,
        address=address,
        dry_run=dry_run,
        progress=None if quiet else sys.stderr,
        source_dir=linked.source_dir,
    )  # checked whole (experiment, parameters, storage) before anything is written
    if isinstance(outcome, Plan):
        click.echo("\n".join([*linked.describe(), text.rstrip()]))
        click.echo(
            f"# trials: {outcome.total} in all, {outcome.total - outcome.to_run} already done, "
            f"{outcome.to_run} to run"
        )
        return
    click.echo("\n".join(linked.describe()))
    _outcome(outcome)
    click.echo(f"compare: sweep report {sweep_dir}   (section: Confirmation on fresh seeds)")


@main.command()
@click.argument("sweep_dirs", nargs=-1, metavar="SWEEP_DIR...")
@click.option(
    "--all",
    "root",
    default=None,
    metavar="RESULTS_DIR",
    help="Compare every sweep under this results folder (or bucket URI).",
)
@_report_options("compare-<names> beside the sweeps")
def compare(
    sweep_dirs: tuple[str, ...], root: str | None, out: Path | None, **options: object
) -> None:
    """Compare several sweeps side by side: sweep compare A B [C ...], or --all results/.

    The same report as `sweep report`, with the sweep as a factor of its own.
    """
    if bool(sweep_dirs) == bool(root):
        raise InputError("give two or more sweep folders, or --all RESULTS_DIR (not both)")
    from orchestrator import reporting  # scipy and matplotlib: only when needed

    folder = reporting.compare(list(sweep_dirs) or [root], out, **options)
    click.echo(f"comparison: {folder / 'report.html'}")


@main.command()
@click.argument("sweep_dir", metavar="SWEEP_DIR")
@click.option("--metric", required=True, help="The metric to plot (final or per step).")
@click.option(
    "--x",
    "x",
    default=None,
    metavar="PARAM",
    help="Plot against this parameter (or `step`); default: per step for a per-step "
    "metric, else its distribution per group.",
)
@click.option(
    "--by",
    default=None,
    metavar="PARAM",
    help="One line (or histogram) per value of PARAM; default: per group.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG file (default: SWEEP_DIR/plots/<metric>[-vs-<x>].png).",
)
def plot(sweep_dir: str, metric: str, x: str | None, by: str | None, out: Path | None) -> None:
    """Draw one figure of a sweep's metric as a PNG.

    \b
    sweep plot results/regression --metric val_loss --x lr --by optimizer
    sweep plot results/regression --metric train_loss      (per step, per group)

    A per-step metric against its step, a final metric against a parameter (--x), or a
    final metric's distribution per group (a group is a config without its seed); lines
    show the mean over seeds with a 95% band. Successful trials only.
    """
    from orchestrator import reporting  # scipy and matplotlib: only when needed

    click.echo(f"plot: {reporting.plot(sweep_dir, metric, x, by, out)}")


@main.command()
@click.argument("sweep_dir", metavar="SWEEP_DIR")
@click.option(
    "--metric",
    required=True,
    metavar="METRIC",
    help="A final metric (a column of trials/), or a pair metric of pairs/ (pd, ...).",
)
@click.option("--by", required=True, metavar="KEY", help="The factor whose levels are compared.")
@click.option(
    "--effect",
    type=float,
    default=None,
    metavar="E",
    help="The difference between two levels to detect, in the metric's units: prints the "
    "seeds per level it needs. Without it: only the smallest difference detectable now.",
)
@click.option(
    "--power",
    "target",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    metavar="P",
    default=0.8,
    show_default=True,
    help="The chance of detecting the difference, when it is there.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    metavar="A",
    default=0.05,
    show_default=True,
    help="The test's level (two-sided).",
)
@click.option(
    "--adjust",
    is_flag=True,
    help="With more than two levels: Bonferroni, alpha divided by the number of pairs of "
    "levels (default: each pair at alpha, unadjusted).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout, nothing else.")
def power(
    sweep_dir: str,
    metric: str,
    by: str,
    effect: float | None,
    target: float,
    alpha: float,
    adjust: bool,
    as_json: bool,
) -> None:
    """How many seeds per level of KEY a difference between two levels needs, with the
    sweep's spread as a pilot; SWEEP_DIR a folder or a URI.

    \b
    sweep power results/regression --metric val_loss --by optimizer --effect 0.01
    sweep power results/regression --metric val_loss --by lr --json

    The spread is the pooled within-cell SD across seeds (a cell: one level of KEY at
    one setting of the other factors; weights n - 1). Power is that of a two-sided
    two-sample t-test at --alpha with equal seeds per level (noncentral t), comparing
    two levels at one setting of the other factors; with more than two levels, per pair
    of levels (--adjust: Bonferroni over the pairs). Prints the seeds per level that
    --effect needs, and the smallest difference the current seeds (the smallest count of
    any cell) detect with --power. The pilot SD is taken as the true one (its 95%
    interval is printed). A pair metric (pd, relative_pd, top1_mismatch_pct) has no
    value per seed: each model gets its mean over its pairs in its cell, the spread
    scaled to the delete-one-model jackknife; an approximation of the model-level
    spread, needing 3 seeds per cell.
    """
    import json

    from analysis.power import analyse_power, describe
    from analysis.sweep import load

    result = analyse_power(load(sweep_dir, steps=False), metric, by, effect, target, alpha, adjust)
    if as_json:
        click.echo(json.dumps(result, allow_nan=False))
    else:
        click.echo(describe(result))
