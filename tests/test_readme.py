"""The README's promises: CI runs its test command, and its quickstart exists."""

from __future__ import annotations

import re

from conftest import REPO

README = (REPO / "README.md").read_text()


def commands() -> list[str]:
    return re.findall(r"^python3 -m venv .*$", README, flags=re.MULTILINE)


def test_ci_runs_the_readme_test_command():
    test_command = next(c for c in commands() if "pytest" in c)
    assert test_command in (REPO / ".ci" / "run").read_text().splitlines()


def test_the_quickstart_command_names_a_spec_that_exists():
    quickstart = next(c for c in commands() if "sweep run" in c)
    spec = re.search(r"sweep run (\S+)", quickstart).group(1)
    assert (REPO / spec).is_file()
    assert "torch==2.13.0" in quickstart
