"""What README.md, CONTRIBUTING.md and docs/ show must hold: every relative link resolves
(to a file, and to a heading of it when it names one), and every shell command in a
```bash block runs, unless the block's first line is a comment that ends "(needs a
cluster)" or "(needs a GPU)".

The commands run in page order in one folder holding `spec.yaml`, a small sweep named
`regression` of the shipped regression experiment, already run once: the placeholders the
pages use. A `sweep` command runs in this process (`cli`). Commands that take minutes
(the install lines, the shipped families' quick runs, from the repository root) must be
ones CI runs verbatim (.ci/run); the README's own experiment runs in test_readme.py. A
command two pages show runs once."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, cli
from test_readme import section

PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").rglob("*.md"))]
EXEMPT = ("(needs a cluster)", "(needs a GPU)")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# The sweep the pages' commands act on: what experiments/sweeps/regression.yaml holds, fewer
# cells and steps (its keys all there, so `--set params.steps=50` and `--by optimizer` work).
SPEC = {
    "name": "regression",
    "experiment": "regression",
    "grid": {"lr": [0.01, 0.1], "optimizer": ["sgd", "adam"]},
    "seeds": 2,
    "params": {"steps": 50, "batch_size": 32, "features": 16, "noise": 0.5},
    "resources": {"cpu": 1},
    "retries": 1,
}


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


def prose(text: str) -> str:
    """`text` without its fenced code blocks and inline code spans."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of `page`'s headings, a repeated one numbered as GitHub does."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE):
        base = slug(heading)
        seen[base] = seen.get(base, -1) + 1
        found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.name}")
    assert not broken, f"{page_id(page)}: " + "; ".join(broken)


def commands(text: str) -> list[str]:
    """The commands of the ```bash blocks of `text` that are not marked as needing a
    cluster or a GPU, as typed: continuation lines joined, comments dropped."""
    found = []
    for language, body in FENCE.findall(text):
        lines = body.replace("\\\n", " ").splitlines()
        marked = lines and lines[0].startswith("#") and lines[0].endswith(EXEMPT)
        if language == "bash" and not marked:
            found += [re.sub(r"(^|\s+)#.*$", "", line).strip() for line in lines]
    return [command for command in found if command]


def test_every_page_shows_commands_only_in_marked_or_runnable_blocks():
    """The convention holds at all: some commands run, and the marked blocks are marked
    with exactly the strings above (a block marked "(needs GPU)" would run and fail)."""
    assert sum(len(commands(page.read_text())) for page in PAGES) >= 20
    marks = [m for p in PAGES for m in re.findall(r"^# .*\((needs [^)]*)\)$", p.read_text(), re.M)]
    assert marks and set(marks) <= {"needs a cluster", "needs a GPU"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, ray_instance) -> Path:
    """A folder with spec.yaml and its sweep results/regression, run once."""
    folder = tmp_path_factory.mktemp("docs")
    (folder / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    out = cli("run", "spec.yaml", cwd=folder)
    assert out.returncode == 0, out.stderr
    return folder


RAN = set(commands(section("Your own experiment")))  # test_readme runs these, in their folder
# What CI runs: its lines, and each command of them as the pages write it (`sweep`).
CI_LINES = (REPO / ".ci" / "run").read_text().splitlines()
CI = {*CI_LINES, *(p.strip().removeprefix(".venv/bin/") for x in CI_LINES for p in x.split("&&"))}


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_command_a_page_shows_runs(page: Path, folder: Path):
    for command in commands(page.read_text()):
        if command in RAN or command in CI:
            continue
        if command.startswith("sweep ") and "experiments/sweeps/" not in command:
            out = cli(*shlex.split(command)[1:], cwd=folder)
            said = f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
            assert out.returncode == 0, (
                f"{page_id(page)}: `{command}` exited {out.returncode}\n{said}"
            )
        else:
            raise AssertionError(
                f"{page_id(page)}: `{command}` runs in no test: show a `sweep` command on "
                "spec.yaml or results/regression, have .ci/run run it, or mark its block "
                "(needs a cluster) / (needs a GPU)"
            )
        RAN.add(command)


def test_the_readme_notebook_snippet_runs_on_a_regression_sweep(folder: Path, monkeypatch):
    """The README's "Results in a notebook" code runs on results/regression, and its
    `sweep.ok` is one row per successful trial."""
    (snippet,) = re.findall(r"^```python\n(.*?)^```", section("Results in a notebook"), re.M | re.S)
    monkeypatch.chdir(folder)
    names: dict = {}
    exec(snippet, names)  # noqa: S102 - the README's own code
    trials = pd.read_parquet(folder / "results" / "regression" / "trials")
    ok = trials.loc[trials["status"] == "ok", "trial_id"]
    assert sorted(names["sweep"].ok["trial_id"]) == sorted(ok) and ok.is_unique
