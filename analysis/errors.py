"""The one exception type for bad analysis input: a folder that holds no sweep, an
unknown metric or parameter. `sweep report|compare|plot` print it and exit with code 2."""

from __future__ import annotations


class AnalysisError(ValueError):
    """What was asked of the analysis cannot be done with the data given; says what to do."""
