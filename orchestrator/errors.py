"""The exceptions the CLI turns into exit codes: bad input (2) and a sweep whose trials
cannot start (1). Kept free of heavy imports, so `sweep --help` and `sweep status` start fast."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TrialsCannotStart(Exception):
    """The sweep stopped because its first attempts all died before the experiment ran."""


class InputError(Exception):
    """Bad input from the user: a spec, an override, an address, a storage folder.

    Raised before anything is written, so the user can fix the input and rerun.
    """


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
