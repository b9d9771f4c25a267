"""A sweep under chaos: what it survives, and what surviving costs in wall time.

A three-node local cluster (ray.cluster_utils.Cluster: a head and two workers, --slots
logical CPUs each) runs --trials short trials (three reported steps, 0.4 s of sleep, a
result computed from the config), with `sweep run --address` as a separate driver
process, twice, each into a fresh folder:

  undisturbed  one run on the full cluster: the baseline wall time and table
  chaos        the same spec while
                 - the driver is SIGKILLed --driver-kills times, each 5-20% of the
                   baseline's trial time after its run's trials started (its first
                   metrics file); the next run resumes the sweep;
                 - --worker-kills trial worker processes (`ray::ImplicitFunc.train`, a
                   trial running in it) are SIGKILLed;
                 - one worker node with a trial on it is removed (Cluster.remove_node,
                   not graceful);
               then `sweep run` again until it exits 0 (every rerun counted).
The worker kills and the node removal (in the middle third of them) come one after
another, each a random gap of trial time after the one before (the clock runs only
while a driver's trials run; a gap is 0.5-1.5x the mean), so that they spread over
about the first 70% of the baseline's trial time whatever the restarts cost. Every
delay and choice comes from a seeded RNG (--seed). A worker killed shortly before a driver
kill is recorded as that driver's cut-off attempt, not as a failure of its own.

The audit of the chaos sweep's tables (all must be 0 or yes):
  trials lost            trials of the spec without an `ok` row
  duplicate ok rows      `ok` rows beyond one per trial
  duplicate keys         (trial_id, attempt) in trials/, (trial_id, attempt, step) in metrics/
  orphan attempts        attempts with steps in metrics/ and no row in trials/
  same results           the ok rows (config + result) and their steps equal the baseline's
and, for information, the failed attempt rows (the killed drivers' cut-off attempts,
which say so, and the attempts whose worker or node died) and the wall time: chaos is
the wall clock from the first driver's start to the last run's end (restarts and the
reruns included, on two nodes after the removal) against the undisturbed run's.
Ray's own fault-tolerance release test kills a random node with probability 0.03 every
10 s and asserts that every trial reaches its last iteration.

    python benchmarks/chaos.py                       # 500 trials, 5 driver and 20 worker kills
    python benchmarks/chaos.py --trials 40 --driver-kills 2 --worker-kills 4 --json out.json

Only processes this benchmark started are killed: the trial workers are found as
children of its own cluster's raylets (other Ray instances on the machine are left alone).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from common import script_parser
from ray.cluster_utils import Cluster

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: the orchestrator next to it

from orchestrator.faults.failures import LEFT_BEHIND  # noqa: E402
from orchestrator.spec import load_spec  # noqa: E402
from orchestrator.trials import expand, trial_id  # noqa: E402

SWEEP = str(Path(sys.executable).parent / "sweep")
NAME = "chaos"
STEPS = 3
SLEEP_S = 0.4
RETRIES = 3
MAX_RERUNS = 5  # after the last driver kill
SPREAD = 0.7  # worker kills and the node removal: over this share of the baseline's trial time
WORKER_TITLE = "ray::ImplicitFunc.train"  # a Tune trial actor running a trial
SOURCE = """
    import time

    def experiment(config, trial):
        for step in range(config["steps"]):
            time.sleep(config["sleep"] / config["steps"])
            trial.report(step=step, value=config["x"] * (step + 1) + config["seed"])
        return {"result": config["x"] * 10 + config["seed"]}
"""


# --- the sweep and its driver ---------------------------------------------------------


def write_spec(folder: Path, trials: int) -> Path:
    """The experiment module and a spec of `trials` trials (trials / 2 values x 2 seeds)."""
    folder.mkdir(parents=True)
    (folder / "chaos_exp.py").write_text(textwrap.dedent(SOURCE))
    spec = {
        "name": NAME,
        "experiment": "chaos_exp:experiment",
        "grid": {"x": list(range(trials // 2))},
        "seeds": 2,
        "params": {"sleep": SLEEP_S, "steps": STEPS},
        "retries": RETRIES,
        "storage": str(folder / "results"),
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def expected_ids(spec: Path) -> set[str]:
    """Every trial id the spec asks for."""
    parsed = load_spec(spec)
    return {trial_id(parsed.experiment, config) for config in expand(parsed)}


def start_driver(spec: Path, address: str, log: Path) -> subprocess.Popen:
    """`sweep run SPEC --address ADDRESS` in its own session (so it can be killed alone)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
    with log.open("w") as out:
        return subprocess.Popen(
            [SWEEP, "run", str(spec), "--address", address, "--quiet"],
            cwd=spec.parent, env=env, start_new_session=True, stdout=out, stderr=out,
        )  # fmt: skip


def metrics_files(spec: Path) -> set[Path]:
    return set((spec.parent / "results" / NAME / "metrics").glob("*.parquet"))


def wait_for_trials(driver: subprocess.Popen, spec: Path, before: set[Path]) -> bool:
    """Wait until the driver writes a new metrics file (its trials run); False if it
    exited first."""
    while not metrics_files(spec) - before:
        if driver.poll() is not None:
            return False
        time.sleep(0.1)
    return True


def log_tail(log: Path, lines: int = 8) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# --- the cluster and the processes to kill --------------------------------------------


def start_cluster(slots: int) -> Cluster:
    """A head and two worker nodes, `slots` logical CPUs each; this process does not join."""
    node_args = {"num_cpus": slots, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, connect=False, head_node_args=node_args)
    for _ in range(2):
        cluster.add_node(num_cpus=slots)
    return cluster


def raylet_pid(node: Any) -> int:
    return node.all_processes["raylet"][0].process.pid


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode().strip()
    except OSError:
        return ""


def busy_workers(nodes: list[Any]) -> dict[int, Any]:
    """pid -> node of this cluster's trial workers that are running a trial."""
    raylets = {raylet_pid(node): node for node in nodes}
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and title(int(entry.name)) == WORKER_TITLE:
            node = raylets.get(parent_pid(int(entry.name)))
            if node is not None:
                found[int(entry.name)] = node
    return found


# --- what happened ---------------------------------------------------------------------


@dataclass
class Runs:
    """The driver runs of one sweep: wall time, exit codes, what was killed."""

    wall_s: float = 0.0
    trials_s: float = 0.0  # from each run's first metrics file to its end, summed
    exits: list[int] = field(default_factory=list)  # -9 for a killed driver
    driver_kills: int = 0
    kill_misses: int = 0  # drivers that ended before their kill
    reruns: int = 0  # runs after the last kill, the one that finished included
    hung: int = 0  # runs killed for taking longer than limit_s
    limit_s: float = 3600.0
    worker_kills: int = 0
    node_kills: int = 0
    started: float = field(default_factory=time.monotonic)
    events: list[str] = field(default_factory=list)  # "seconds since the start: what"

    def note(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:6.1f} s: {what}")


@dataclass
class Saboteur:
    """Kills trial workers and removes one worker node, one after another, in a thread:
    each strike comes a set gap of trial time after the one before (its clock runs only
    while `running` is set: a driver's trials run), as soon as a trial runs to strike."""

    cluster: Cluster
    running: threading.Event
    schedule: list[tuple[float, str]]  # (gap in seconds of trial time, "worker" | "node")
    rng: random.Random
    runs: Runs  # counts and notes each kill
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        for gap, action in self.schedule:
            clock, last = 0.0, time.monotonic()
            while not self.stop.is_set():
                now = time.monotonic()
                clock += now - last if self.running.is_set() else 0.0
                last = now
                if clock >= gap and self.running.is_set() and self._strike(action):
                    break
                time.sleep(0.05)

    def _strike(self, action: str) -> bool:
        """Kill one busy worker, or remove a worker node that has one; False if none runs."""
        workers = busy_workers(self.cluster.list_all_nodes())
        if action == "node":
            head = self.cluster.head_node
            victims = {n.node_id: n for n in workers.values() if n is not head}
            if not victims:
                return False
            node = victims[self.rng.choice(sorted(victims))]
            self.cluster.remove_node(node, allow_graceful=False)
            self.runs.node_kills += 1
            on_it = sum(n is node for n in workers.values())
            self.runs.note(f"node {node.node_id[:8]} removed ({on_it} trials running on it)")
            return True
        if not workers:
            return False
        pid = self.rng.choice(sorted(workers))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.runs.worker_kills += 1
        self.runs.note(f"worker {pid} killed ({len(workers)} trials running in all)")
        return True


# --- the two sweeps --------------------------------------------------------------------


def drive(
    spec: Path, address: str, runs: Runs, running: threading.Event, kill_after: float | None
) -> int:
    """One `sweep run`: SIGKILLed `kill_after` seconds after its trials started, or left
    to finish (killed runs.limit_s after its trials started, counted as hung). `running`
    is set while its trials run. Returns its exit code (-9 when killed)."""
    number = len(runs.exits) + 1
    log = spec.parent / f"run-{number}.log"
    before = metrics_files(spec)
    driver = start_driver(spec, address, log)
    plan = "to run to the end" if kill_after is None else f"to be killed {kill_after:.1f} s in"
    runs.note(f"driver {number} started, {plan}")
    if wait_for_trials(driver, spec, before):
        running.set()
    trials_from = time.monotonic()
    try:
        driver.wait(timeout=runs.limit_s if kill_after is None else kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        if kill_after is None:
            runs.hung += 1
        else:
            runs.driver_kills += 1
    if running.is_set():
        runs.trials_s += time.monotonic() - trials_from
    running.clear()
    code = driver.wait()
    runs.exits.append(code)
    runs.note(f"driver {number} {'killed' if code == -signal.SIGKILL else f'exited {code}'}")
    if kill_after is not None and code != -signal.SIGKILL:
        runs.kill_misses += 1
    if code not in (0, -signal.SIGKILL) or runs.hung:
        print(f"  run {number} exited {code}:\n{textwrap.indent(log_tail(log), '    ')}")
    return code


def undisturbed(spec: Path, address: str, limit_s: float) -> Runs:
    runs = Runs(limit_s=limit_s)
    drive(spec, address, runs, threading.Event(), kill_after=None)
    runs.wall_s = time.monotonic() - runs.started
    return runs


def strikes(workers: int, spread_s: float, rng: random.Random) -> list[tuple[float, str]]:
    """`workers` worker kills and one node removal (in the middle third), each a random
    gap (0.5 to 1.5 times the mean) after the one before; the gaps add up to about
    `spread_s`."""
    actions = ["worker"] * workers
    actions.insert(rng.randint(workers // 3, 2 * workers // 3), "node")
    mean = spread_s / len(actions)
    return [(rng.uniform(0.5, 1.5) * mean, action) for action in actions]


def chaos(
    spec: Path, cluster: Cluster, args: argparse.Namespace, baseline_s: float, limit_s: float
) -> Runs:
    """The driver killed args.driver_kills times, then rerun until it exits 0; meanwhile
    a Saboteur kills workers and removes a node. `baseline_s`: how long the undisturbed
    run's trials ran (from its first metrics file to its end)."""
    rng = random.Random(args.seed)
    running = threading.Event()
    runs = Runs(limit_s=limit_s)
    schedule = strikes(args.worker_kills, SPREAD * baseline_s, rng)
    saboteur = Saboteur(cluster, running, schedule, random.Random(args.seed + 1), runs)
    thread = saboteur.start()
    for _ in range(args.driver_kills):
        drive(spec, cluster.address, runs, running, rng.uniform(0.05, 0.2) * baseline_s)
    for _ in range(MAX_RERUNS):
        runs.reruns += 1
        if drive(spec, cluster.address, runs, running, kill_after=None) == 0:
            break
    runs.wall_s = time.monotonic() - runs.started
    saboteur.stop.set()
    thread.join()
    return runs


# --- the audit -------------------------------------------------------------------------


def tables(spec: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = spec.parent / "results" / NAME
    return pd.read_parquet(folder / "trials"), pd.read_parquet(folder / "metrics")


def successful(trials: pd.DataFrame, metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ok rows (config + result) and the steps of those attempts, in a fixed order."""
    ok = trials[trials["status"] == "ok"].drop_duplicates("trial_id")
    rows = ok[["trial_id", "x", "seed", "result"]].sort_values("trial_id", ignore_index=True)
    steps = metrics.merge(ok[["trial_id", "attempt"]])[["trial_id", "step", "value"]]
    return rows, steps.sort_values(["trial_id", "step"], ignore_index=True)


def same(a: tuple[pd.DataFrame, ...], b: tuple[pd.DataFrame, ...]) -> bool:
    return all(x.equals(y) for x, y in zip(a, b, strict=True))


def audit(spec: Path, reference: Path) -> dict[str, Any]:
    trials, metrics = tables(spec)
    ok = trials[trials["status"] == "ok"]
    keys = set(zip(trials["trial_id"], trials["attempt"], strict=True))
    stepped = set(zip(metrics["trial_id"], metrics["attempt"], strict=True))
    failed = trials[trials["status"] != "ok"]
    cut_off = failed["error"] == LEFT_BEHIND
    return {
        "trials lost": len(expected_ids(spec) - set(ok["trial_id"])),
        "duplicate ok rows": int(ok["trial_id"].duplicated().sum()),
        "duplicate (trial_id, attempt)": int(trials.duplicated(["trial_id", "attempt"]).sum()),
        "duplicate (trial_id, attempt, step)": int(
            metrics.duplicated(["trial_id", "attempt", "step"]).sum()
        ),
        "orphan attempts": len(stepped - keys),
        "same results as undisturbed": same(
            successful(trials, metrics), successful(*tables(reference))
        ),
        "failed rows: driver killed": int(cut_off.sum()),
        "failed rows: worker or node died": int((~cut_off).sum()),
        "attempt rows": len(trials),
    }


MUST_BE_ZERO = [
    "trials lost",
    "duplicate ok rows",
    "duplicate (trial_id, attempt)",
    "duplicate (trial_id, attempt, step)",
    "orphan attempts",
]


def passed(report: dict[str, Any], runs: Runs) -> bool:
    """Nothing lost or twice, the undisturbed results, and no run that hung or did not end."""
    clean = all(report[k] == 0 for k in MUST_BE_ZERO) and report["same results as undisturbed"]
    return clean and runs.hung == 0 and runs.exits[-1] == 0


def print_report(args: argparse.Namespace, calm: Runs, runs: Runs, found: dict[str, Any]) -> None:
    print(f"\n{args.trials} trials of {SLEEP_S:g} s + {STEPS} steps, 3 nodes x {args.slots} "
          f"slots on {os.cpu_count()} CPU cores, retries {RETRIES}, seed {args.seed}")  # fmt: skip
    kills = [
        ("driver SIGKILLs survived", f"{runs.driver_kills} of {args.driver_kills}"),
        ("worker SIGKILLs survived", f"{runs.worker_kills} of {args.worker_kills}"),
        ("worker nodes removed", f"{runs.node_kills} of 1"),
        ("drivers that ended before their kill", runs.kill_misses),
        ("runs after the last kill", runs.reruns),
        ("hung runs", runs.hung),
    ]
    for name, value in [*kills, *found.items()]:
        mark = "  <- must be 0" if name in MUST_BE_ZERO and value else ""
        print(f"  {name:<38} {value!s:>10}{mark}")
    print(f"  {'wall s, undisturbed':<38} {calm.wall_s:>10.1f}")
    print(f"  {'  of which trials ran':<38} {calm.trials_s:>10.1f}")
    print(f"  {'wall s, chaos (first start to end)':<38} {runs.wall_s:>10.1f}")
    print(f"  {'chaos / undisturbed':<38} {runs.wall_s / calm.wall_s:>9.2f}x")
    print(f"  driver exit codes: {runs.exits}")
    print("chaos timeline:\n" + "\n".join(f"  {event}" for event in runs.events))
    print("PASS" if passed(found, runs) else "FAIL")


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--driver-kills", type=int, default=5)
    parser.add_argument("--worker-kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slots", type=int, default=2, help="logical CPUs per node")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the sweep folders")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="raysweep-chaos-"))
    calm_spec = write_spec(work / "calm", args.trials)
    chaos_spec = write_spec(work / "chaos", args.trials)
    cluster = start_cluster(args.slots)
    try:
        print(f"undisturbed run ({work / 'calm'}) ...", flush=True)
        calm = undisturbed(calm_spec, cluster.address, limit_s=3600)
        assert calm.exits == [0], f"the undisturbed run failed: {calm.exits}"
        print(f"  {calm.wall_s:.1f} s\nchaos run ({work / 'chaos'}) ...", flush=True)
        limit = max(600.0, 10 * calm.wall_s)
        runs = chaos(chaos_spec, cluster, args, calm.trials_s, limit)
    finally:
        cluster.shutdown()
    found = audit(chaos_spec, calm_spec)
    print_report(args, calm, runs, found)
    if args.json:
        report = {"args": {k: str(v) for k, v in vars(args).items()}, **found,
                  "undisturbed": calm.__dict__, "chaos": runs.__dict__}  # fmt: skip
        args.json.write_text(json.dumps(report, indent=2, default=str))
    if passed(found, runs) and not args.keep:
        shutil.rmtree(work)
    else:
        print(f"sweep folders and driver logs kept in {work}")


if __name__ == "__main__":
    main()
