"""The one exception type for bad analysis input: a folder that holds no sweep, an
unknown metric or parameter. `sweep report|compare|plot` print it and exit with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AnalysisError(ValueError):
    """What was asked of the analysis cannot be done with the data given; says what to do."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
