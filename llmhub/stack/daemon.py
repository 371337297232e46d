"""Background service processes of the local stack: started detached, tracked by a pid file."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from llmhub.stack.timescale import StackError


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 within a second (the daemons' readiness and health probe)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_daemon(
    command: Sequence[str],
    run_dir: Path,
    name: str,
    is_ready: Callable[[], bool],
    timeout_s: float,
    poll_s: float = 0.1,
) -> None:
    """Start ``command`` in its own session (it outlives the caller), logging to
    ``run_dir/<name>.log``, and wait until ``is_ready()``.

    Raises:
        StackError: the process exited, or was not ready within ``timeout_s``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / f"{name}.log"
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (run_dir / f"{name}.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout_s
    while not is_ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise StackError(f"{name} did not start; see {log_path}")
        time.sleep(poll_s)


def stop_daemon(run_dir: Path, name: str, grace_s: float = 5.0) -> None:
    """SIGTERM the daemon's process group, SIGKILL it after ``grace_s``; forget its pid."""
    pid_file = run_dir / f"{name}.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        # Its own session and process group: workers it forked (gunicorn, huey) go too.
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)
