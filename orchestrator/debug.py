"""`sweep debug`: one trial of a spec, in this process, without Ray.

Under Ray an experiment runs in a worker: `breakpoint()` never reaches the terminal and a
traceback arrives as a string in the trials table. Here the trial runs as a worker would
run it (the spec's config with its declared defaults filled in, seeded by its seed, on the
device a worker would give it, with the same `Trial` API and inputs), but in the calling
process: reports are printed as they come, the final metrics at full precision, artifacts
go to a scratch folder, and nothing is written to the sweep's tables.
"""

from __future__ import annotations

import pdb
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, TextIO

from orchestrator.context import Trial, check_metrics, seed_everything
from orchestrator.errors import InputError, did_you_mean
from orchestrator.registry import resolve
from orchestrator.runner import grid_configs
from orchestrator.spec import load_spec
from orchestrator.store.artifacts import encode
from orchestrator.store.inputs import resolve_inputs
from orchestrator.worker import devices


def pick(
    configs: dict[str, dict[str, Any]], trial: str | None, where: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    """The trial to run: by id, else the first whose config matches every `where` value
    (compared as text, so `--where lr=0.1` matches 0.1), else the first of the spec."""
    if trial is not None:
        if trial not in configs:
            raise InputError(f"--trial {trial}: no such trial in the spec (sweep run --dry-run)")
        return trial, configs[trial]
    keys = {key for config in configs.values() for key in config}
    for key in where:
        if key not in keys:
            raise InputError(f"--where {key}=...: no such key{did_you_mean(key, sorted(keys))}")
    for tid, config in configs.items():
        if all(str(config.get(key)) == value for key, value in where.items()):
            return tid, config
    shown = ", ".join(f"{k}={v}" for k, v in where.items())
    raise InputError(f"--where {shown}: no trial of the spec matches")


def debug(
    spec_path: Path,
    overrides: list[str],
    trial: str | None = None,
    where: dict[str, str] | None = None,
    post_mortem: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Run one trial of the spec here; 0 when it returned its metrics, 1 when it raised."""
    spec = load_spec(spec_path, overrides)
    source_dir = spec_path.resolve().parent
    experiment = resolve(spec.experiment, [source_dir, Path.cwd()])
    if spec.search.algorithm != "grid":
        raise InputError("sweep debug runs a trial of a grid spec; this one searches")
    tid, config = pick(grid_configs(spec, experiment.params), trial, where or {})
    scratch = Path(tempfile.mkdtemp(prefix="sweep-debug-"))
    device = devices.choose(spec.resources.gpu > 0 and _torch_sees_cuda())
    print(f"trial {tid} on {device}: {_shown(config)}", file=out)
    print(f"artifacts go to {scratch}", file=out)
    context = Trial(
        tid, config, device, _printer(out), _saver(scratch), resolve_inputs(spec.inputs)
    )
    seed_everything(config["seed"])
    try:
        final = check_metrics(experiment.fn(config, context) or {}, config)
    except Exception:
        traceback.print_exc()
        if post_mortem:
            pdb.post_mortem(sys.exc_info()[2])
        return 1
    for name, value in final.items():
        print(f"{name} = {value!r}", file=out)
    return 0


def _torch_sees_cuda() -> bool:
    """Whether this trial would have a GPU in a worker: Ray gives one where there is one."""
    import torch

    return torch.cuda.is_available()


def _printer(out: TextIO):
    def report(metrics: dict[str, Any]) -> None:
        print(f"report: {_shown(metrics)}", file=out, flush=True)

    return report


def _saver(scratch: Path):
    def save(name: str, obj: Any) -> str:
        path = scratch / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(obj))
        return str(path)

    return save


def _shown(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in values.items())
