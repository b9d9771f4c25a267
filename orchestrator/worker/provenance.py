"""Where a result came from: the code's git commit, and package versions."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("ray", "torch", "numpy", "pandas", "pyarrow")


def git_state(folder: Path) -> dict[str, object]:
    """`git_commit` and `git_dirty` (tracked files changed) of the repo holding `folder`."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10
        )
        if out.returncode != 0:
            raise OSError(out.stderr)
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


@functools.cache
def package_versions() -> dict[str, str | None]:
    """`version_<package>` for Python and the packages results depend on (cached)."""

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"version_python": platform.python_version()} | {
        f"version_{name}": installed(name) for name in PACKAGES
    }
