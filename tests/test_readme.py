"""The README's promises: CI runs its two commands verbatim (the tests, and the quickstart
from a fresh clone), the quickstart's spec exists, and "Your own experiment" runs as shown:
its files, its commands through the installed `sweep`, and what they print."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

from conftest import REPO, sweep

README = (REPO / "README.md").read_text()
CI_LINES = (REPO / ".ci" / "run").read_text().splitlines()


def commands() -> list[str]:
    return re.findall(r"^python3 -m venv .*$", README, flags=re.MULTILINE)


def test_ci_runs_the_readme_test_command():
    test_command = next(c for c in commands() if "pytest" in c)
    assert test_command in CI_LINES


def test_ci_runs_the_readme_quickstart_command():
    quickstart = next(c for c in commands() if "sweep run" in c)
    assert quickstart in CI_LINES


def test_the_quickstart_command_names_a_spec_that_exists():
    quickstart = next(c for c in commands() if "sweep run" in c)
    spec = re.search(r"sweep run (\S+)", quickstart).group(1)
    assert (REPO / spec).is_file()
    assert "torch==2.13.0" in quickstart


def section(title: str) -> str:
    """The text of the README's `## title` section, up to the next `## ` heading."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert found, f"no section '## {title}' in README.md"
    return found.group(1)


def blocks(text: str) -> dict[str, list[str]]:
    """The fenced code blocks of `text` by language, in order."""
    found: dict[str, list[str]] = {}
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S):
        found.setdefault(language, []).append(body)
    return found


def masked(text: str) -> list[str]:
    """`text` as words, with what differs from run to run replaced: the folder the example
    runs in, run ids, times, the git commit of that folder."""
    text = re.sub(r"\S+(?=/results/)", "FOLDER", text)
    text = re.sub(r"\brun [0-9a-f]{8}\b", "run RUN_ID", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*", "TIME", text)
    text = re.sub(r"\bgit \S+( \(dirty\))?", "git COMMIT", text)
    return text.split()


def same_words(got: list[str], shown: list[str]) -> bool:
    """Word for word, numbers to the digits shown (a last digit may round the other way on
    another CPU's floating point)."""
    if len(got) != len(shown):
        return False
    for a, b in zip(got, shown, strict=True):
        try:
            if not math.isclose(float(a), float(b), rel_tol=1e-4, abs_tol=1e-6):
                return False
        except ValueError:
            if a != b:
                return False
    return True


def test_your_own_experiment_runs_as_shown(tmp_path: Path):
    shown = blocks(section("Your own experiment"))
    for language in ("python", "yaml"):  # each file says its name on its first line
        source = shown[language][0]
        name = re.match(r"# (\S+)\n", source).group(1)
        (tmp_path / name).write_text(source)
    assert (tmp_path / "line.py").is_file() and (tmp_path / "spec.yaml").is_file()

    printed = ""
    for line in shown["bash"][0].splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assert words[0] == "sweep", line
        ran = sweep(*words[1:], cwd=tmp_path)
        assert ran.returncode == 0, f"{line}\n{ran.stdout}\n{ran.stderr}"
        printed += ran.stdout

    expected = shown["text"][0]
    assert same_words(masked(printed), masked(expected)), (
        f"README.md shows:\n{expected}\nthe commands printed:\n{printed}"
    )
