"""Starting an embedded Ray, or joining a cluster, with the token authentication it uses.

Ray 2.60 turns token authentication on for every local cluster it starts and says so in
a warning each time; setting RAY_AUTH_MODE ourselves (Ray's own switch) keeps the same
behaviour without the warning. A cluster may run with or without tokens, whatever token
file this machine holds (any local run writes ~/.ray/auth_token): sending a token to a
cluster without authentication leaves every actor cancelled before it runs, and sending
none to one with it is refused. So before joining we ask the cluster's GCS, without a
token, for one key: refused means it wants the token. A RAY_AUTH_MODE the user set is
always respected.

Every worker of the job runs `orchestrator.worker.shutdown.quiet_exits` as it starts (Ray's
`worker_process_setup_hook`), so that Ray stopping it prints no traceback, unless the job
(`ray job submit --runtime-env-json`) names a setup hook of its own: Ray takes one.

Which Ray: `--address` when given ("local" forces a new embedded one); else the cluster
RAY_ADDRESS names, as `ray.init()` does and as a job started by `ray job submit` expects
(Ray sets it for the job's driver); else an embedded Ray on this machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

from orchestrator.errors import InputError

_MODE = "RAY_AUTH_MODE"
_JOB_CONFIG = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # what Ray gives a job's driver: its runtime_env
_SETUP_HOOK = "worker_process_setup_hook"
_ours: list[str] = []  # the modes this process set itself, which a later call may change


def choose(address: str | None) -> tuple[str | None, str | None]:
    """The cluster to join (None: start an embedded Ray) and, when RAY_ADDRESS chose it,
    a line that says so."""
    if address == "local":
        return None, None
    if address:
        return address, None
    named = os.environ.get("RAY_ADDRESS", "").strip()
    if not named or named == "local":
        return None, None
    if "://" in named and not named.startswith("ray://"):
        raise InputError(
            f"RAY_ADDRESS={named}: that is a dashboard address, for `ray job submit`; a sweep "
            "joins a cluster at host:port (its GCS, port 6379 by default). Submit the sweep "
            "as a job (`ray job submit --working-dir . -- sweep run spec.yaml`), give "
            "--address host:port, or --address local to run on this machine"
        )
    return named, (
        f"joining the Ray cluster at {named} (RAY_ADDRESS; --address local runs on an "
        "embedded Ray instead)"
    )


def connect(address: str | None, wait: float | None = None) -> bool:
    """Start or join Ray; True when this call started it (and so must stop it). With
    `wait`, a Ray that has not let this driver in after that many seconds ends the process
    (see `_no_answer`)."""
    import ray

    if ray.is_initialized():
        return False
    if address and address != "auto":
        _check_reachable(address)
    if address:
        _match_cluster_auth(address)
    elif not _user_set_mode():
        _set_auth_mode("token")  # Ray's default for a local cluster, without its warning
    try:
        with _deadline(wait, address):
            # "local": a new embedded Ray, never a stale one that `ray start` left behind.
            ray.init(
                address or "local",
                include_dashboard=False,
                logging_level=logging.WARNING,
                runtime_env=_runtime_env(),
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InputError(
            f"--address {address}: no Ray cluster there ({exc}). Start one with "
            "`ray start --head`, or leave out --address to run on this machine"
        ) from None
    return True


def _runtime_env() -> dict[str, str]:
    """The setup hook of every worker of this job, where the job has none of its own."""
    job = json.loads(os.environ.get(_JOB_CONFIG, "{}")).get("runtime_env") or {}
    if _SETUP_HOOK in job:
        return {}
    return {_SETUP_HOOK: "orchestrator.worker.shutdown.quiet_exits"}


@contextlib.contextmanager
def _deadline(seconds: float | None, address: str | None) -> Iterator[None]:
    """Ends this process with SIGKILL, after saying why, when the block still runs after
    `seconds`. The guard is another process: `ray.init` waits in C++ code that holds
    Python's lock, so no thread or signal handler here would run. Nothing was written
    yet when it acts."""
    if seconds is None:
        yield
        return
    args = [str(os.getpid()), str(seconds), _no_answer(address, seconds)]
    guard = subprocess.Popen([sys.executable, "-c", _GUARD, *args])
    try:
        yield
    finally:
        guard.kill()
        guard.wait()


_GUARD = """
import os, sys, time
pid, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(seconds)
if os.getppid() == pid:
    sys.stderr.write(message)
    sys.stderr.flush()
    os.kill(pid, 9)
"""


def _no_answer(address: str | None, wait: float) -> str:
    """Ray keeps the first driver of a fresh cluster waiting until its node has started
    worker processes: for ever where they cannot start."""
    where = f"the cluster at {address}" if address else "the Ray this run started"
    return (
        f"error: {where} has not let this driver in after {wait:g} s (limits.start_time), "
        "so the run was ended. Ray admits the first driver of a cluster only once its node "
        "has started worker processes: check that the nodes' Python starts (a sitecustomize, "
        "a broken environment), that this machine can reach every port of the nodes (not "
        "only the GCS port), and the Ray logs on the nodes (/tmp/ray/session_latest/logs: "
        "raylet.out).\n"
    )


def _user_set_mode() -> bool:
    return _MODE in os.environ and os.environ[_MODE] not in _ours


def _set_auth_mode(mode: str) -> None:
    from ray._raylet import Config

    os.environ[_MODE] = mode
    _ours.append(mode)
    Config.initialize("")  # Ray reads the mode into its config; refresh it


def _match_cluster_auth(address: str) -> None:
    """Use a token exactly when the cluster at `address` wants one."""
    if _user_set_mode():
        return
    from ray._private.services import canonicalize_bootstrap_address

    gcs = canonicalize_bootstrap_address(address, temp_dir=None)
    if gcs is None or not _refuses_without_token(gcs):
        _set_auth_mode("disabled")
        return
    from ray._raylet import AuthenticationTokenLoader

    if not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        raise InputError(
            f"--address {address}: the cluster uses token authentication and this machine "
            "has no token. Copy the cluster's token (`ray get-auth-token` on its head node) "
            "to ~/.ray/auth_token, or set RAY_AUTH_TOKEN"
        )
    _set_auth_mode("token")


def _refuses_without_token(gcs: str) -> bool:
    """Whether the GCS at host:port refuses a request that carries no token."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    _set_auth_mode("disabled")
    try:
        GcsClient(address=gcs).internal_kv_get(b"session_name", namespace=b"session", timeout=5)
    except AuthenticationError:
        return True
    except Exception:  # noqa: BLE001 - anything else is for ray.init to report
        return False
    return False


def _check_reachable(address: str) -> None:
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "6379")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except (OSError, ValueError):
        raise InputError(
            f"--address {address}: nothing answers there. Give host:port of a node started "
            "with `ray start --head` (default port 6379), or `auto` on a cluster node"
        ) from None
