"""The Ray cluster of one ``fashion predict --engine ray`` run: connected to, or started here.

:func:`ray_session` connects to ``--address``, or starts a local Ray sized to this machine and
owns it for the run: it is shut down when the run ends, when the driver gets SIGTERM or SIGINT
(the run stops with :class:`Interrupted`, a clear line and a non-zero exit; the parts written so
far stay, a re-run resumes), and by the watchdog of :mod:`fashion.predict.ray.reaper` when the
driver dies without running any code (``kill -9``, a crash). A cluster reached by ``--address``
is never shut down, signalled or watched: it is not this run's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fashion.errors import ConfigError

RAY_EXTRA = "pip install 'fashion-sdk[ray]'"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """The driver got SIGTERM or SIGINT; the local cluster was shut down (``exit_code`` is
    128 + the signal's number)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name}; the local Ray cluster was shut down. "
            "The parts written so far are kept in OUT: run the same command again to finish "
            "the rest."
        )


def require_ray() -> Any:
    """Import Ray Data, or say which extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--engine ray needs Ray Data, which is not installed in this environment; "
            f"install the extra: {RAY_EXTRA}"
        ) from None
    return ray


def start_watchdog() -> subprocess.Popen[bytes] | None:
    """The reaper process (see :mod:`fashion.predict.ray.reaper`): in its own session, so that
    a signal to the driver's process group does not reach it; stdin is the driver's pipe."""
    if not sys.platform.startswith("linux"):
        return None
    script = Path(__file__).with_name("reaper.py")
    return subprocess.Popen(
        [sys.executable, "-I", str(script), str(os.getpid())], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        close_fds=True,
    )


def _tell(watchdog: subprocess.Popen[bytes] | None, session_dir: str | None) -> None:
    if watchdog is None or watchdog.stdin is None or not session_dir:
        return
    try:
        watchdog.stdin.write(session_dir.encode() + b"\n")
        watchdog.stdin.flush()
    except OSError:  # it died: nothing more can be done for a kill -9
        pass


def _release(watchdog: subprocess.Popen[bytes] | None) -> None:
    """Close the pipe (the watchdog reaps what ``ray.shutdown`` left) and wait for it briefly."""
    if watchdog is None:
        return
    try:
        if watchdog.stdin is not None:
            watchdog.stdin.close()
        watchdog.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pass


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`Interrupted` in the main thread (so the ``finally`` that
    shuts the cluster down runs); a second signal while shutting down exits at once (the
    watchdog finishes the clean-up). The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal stopping
        if stopping:
            os._exit(128 + signum)
        stopping = True
        raise Interrupted(signum)

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def ray_session(address: str | None) -> Iterator[bool]:
    """Ray for one run; yields True when the cluster was started here (and is shut down here)."""
    ray = require_ray()
    if ray.is_initialized():  # the caller's: used as it is
        yield False
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            yield False
        finally:
            ray.shutdown()  # disconnects; the cluster is not ours and keeps running
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}  # ray.init sets its own
    watchdog = start_watchdog()
    try:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        context = ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        _tell(watchdog, (getattr(context, "address_info", None) or {}).get("session_dir"))
        with stop_on_signals():
            try:
                yield True
            finally:
                ray.shutdown()
    finally:
        _release(watchdog)
        if threading.current_thread() is threading.main_thread():
            for sig, old in previous.items():
                signal.signal(sig, old)


__all__ = ["Interrupted", "RAY_EXTRA", "STOP_SIGNALS", "ray_session", "require_ray",
           "start_watchdog", "stop_on_signals"]
