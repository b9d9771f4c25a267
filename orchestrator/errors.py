"""The exceptions the CLI turns into exit codes: bad input (2) and a sweep whose trials
cannot start (1). Kept free of heavy imports, so `sweep --help` and `sweep status` start fast."""

from __future__ import annotations

from typing import Any

from analysis.errors import did_you_mean  # one copy, with analysis's errors (no heavy imports)

__all__ = ["InputError", "TrialsCannotStart", "did_you_mean", "error_line"]


class TrialsCannotStart(Exception):
    """The sweep stopped because its first attempts all died before the experiment ran."""


class InputError(Exception):
    """Bad input from the user: a spec, an override, an address, a storage folder.

    Raised before anything is written, so the user can fix the input and rerun.
    """


def error_line(error: Any) -> str:
    """The line of an error that says what went wrong: a traceback's last."""
    text = str(error or "").strip().splitlines()
    return text[-1] if text else "(no error text)"
