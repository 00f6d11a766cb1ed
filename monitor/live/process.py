"""Worker processes started by other programs: the benchmark (:mod:`monitor.live.bench`,
:mod:`monitor.live.bench_recovery`) and the live tests' harness run ``sla-monitor worker`` (and
the bench its Faust ceiling) as subprocesses configured by a :class:`~monitor.live.config.
Settings`, the way an operator's environment would: ``SLA_*`` variables, nothing inherited.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from monitor.live.config import Settings

# ``python`` arguments that run ``sla-monitor worker`` from the current interpreter (no
# console script needed: the tests run from a checkout).
WORKER_ARGS = ("-c", "from monitor.cli import main; raise SystemExit(main())", "worker")


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment with every ``SLA_*`` variable replaced by ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLA_")}
    env.update(settings.to_env())
    env["PYTHONUNBUFFERED"] = "1"  # the log file shows what happened up to a SIGKILL
    return env


def spawn(
    args: Sequence[str],
    env: dict[str, str],
    log_path: Path,
    *,
    prefix: Sequence[str] = (),
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``[*prefix, python, *args]`` with ``env``, its output appended to ``log_path``.
    ``prefix`` wraps the command (the network-fault tests use ``ip netns exec NS``)."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [*prefix, sys.executable, *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
