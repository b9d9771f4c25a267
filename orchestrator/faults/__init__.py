"""What goes wrong in a sweep, told apart and handled.

failures    the status and error text of every failed attempt, in one place
limits      per-attempt wall time and longest silence: the worker is killed
oomkill     kills by the kernel's OOM killer, told apart from other deaths
stuck       workers that never start (a node that cannot run them)
abort       stopping a whole sweep (storage full, trials that cannot start), and why
"""
