"""A sweep's folder: its tables, artifacts and sweep.json, on a disk or a bucket.

folder      SweepStore: reading and appending Parquet files, sweep.json, its runs
writer      a run's rows, buffered and appended
compaction  small files merged into few after a run
leftovers   what a killed driver left, set right by the next run
artifacts   files trials save, written from any node
inputs      other sweeps a sweep's trials read (`inputs:` in the spec)
"""
