"""What the benchmark scripts share: their command line's parser and a local Ray."""

from __future__ import annotations

import argparse

import ray


def script_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose --help is the script's docstring, its layout kept."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)


def start_local_ray() -> None:
    """A fresh local Ray of 2 CPUs, no dashboard, only errors logged."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
