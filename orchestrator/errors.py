"""The exceptions the CLI turns into exit codes: bad input (2) and a sweep whose trials
cannot start (1). Kept free of heavy imports, so `sweep --help` and `sweep status` start fast."""

from __future__ import annotations

from analysis.errors import did_you_mean  # one copy, with analysis's errors (no heavy imports)

__all__ = ["InputError", "TrialsCannotStart", "did_you_mean"]


class TrialsCannotStart(Exception):
    """The sweep stopped because its first attempts all died before the experiment ran."""


class InputError(Exception):
    """Bad input from the user: a spec, an override, an address, a storage folder.

    Raised before anything is written, so the user can fix the input and rerun.
    """
