"""The driver's side of a run (orchestrator/runner.py calls them in order).

connection  start or join Ray (token auth included)
tuner       the Ray Tune Tuner of a run: param space, scheduler, searchers, Tune's fixes
ledger      Tune's events and the workers' reports into attempts and table rows
progress    the progress line
signals     Ctrl-C and SIGTERM end a run, losing nothing recorded
"""
