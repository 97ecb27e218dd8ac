"""The watchdog of a local Ray cluster: it stops the cluster's processes when the driver dies.

``fashion predict --engine ray`` without ``--address`` starts Ray on this machine from the driver
process. Ray ties the processes it starts itself (GCS, raylet, monitors) to the driver with
``PR_SET_PDEATHSIG``, and the workers exit when their raylet goes, but the agents the raylet
starts (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) only notice after several seconds and
then wait up to a minute on the dead GCS before they exit. A signal the driver can catch
(SIGTERM, SIGINT) shuts the cluster down cleanly (:mod:`fashion.predict.ray.cluster`); this
process covers the one it cannot catch, ``kill -9``, and a crash.

The driver starts it (``python -I reaper.py DRIVER_PID``, in a session of its own, with a pipe
as stdin) before ``ray.init`` and writes the session folder to the pipe once Ray is up. The
kernel closes the pipe however the driver ends, so end of file on stdin means "the driver is
gone": the watchdog then sends SIGTERM, and two seconds later SIGKILL, to every process of
that session — the processes whose command line names the session folder, and those started
by its raylet (its children, noted every second while it lives, or ``RAY_RAYLET_PID`` in their
environment, which a process title can overwrite; started after the raylet). Linux only
(it reads ``/proc``); elsewhere it only waits and exits. Standard library only: it must start
fast and must not import torch.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from pathlib import Path

PROC = Path("/proc")
GRACE_S = 2.0


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone, or not ours
        return b""


def _stat(pid: int) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name: state, ppid, ... (none if gone)."""
    stat = _read(PROC / str(pid) / "stat")
    return stat[stat.rfind(b")") + 2:].split() if stat else []


def _start_time(pid: int) -> int | None:
    """Clock ticks since boot at which ``pid`` started (guards against a reused pid)."""
    fields = _stat(pid)
    return int(fields[19]) if len(fields) > 19 else None


def _pids() -> list[int]:
    try:
        return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]
    except OSError:
        return []


def names_session(cmdline: bytes, marker: bytes, driver: int) -> bool:
    """Whether a command line names the session: its folder ``marker`` once the driver said it,
    before that any folder ``.../session_<date>_<driver pid>`` (Ray names sessions so)."""
    if marker:
        return marker in cmdline
    tail = b"_%d" % driver
    for piece in cmdline.split(b"/session_")[1:]:
        name = piece.split(b"/", 1)[0].split(b"\0", 1)[0]
        if name.endswith(tail):
            return True
    return False


def find_raylet(marker: bytes, driver: int) -> tuple[int, int] | None:
    """The raylet of the session: (pid, start time)."""
    for pid in _pids():
        cmdline = _read(PROC / str(pid) / "cmdline")
        argv = cmdline.split(b"\0")
        if argv and argv[0].endswith(b"/raylet") and names_session(cmdline, marker, driver):
            start = _start_time(pid)
            if start is not None:
                return pid, start
    return None


def session_processes(marker: bytes, driver: int, raylet: tuple[int, int] | None) -> list[int]:
    """Every live process of the session: named by its command line, or started by its raylet."""
    me, found = os.getpid(), []
    uid = os.getuid()
    tag = f"RAY_RAYLET_PID={raylet[0]}".encode() if raylet else None
    for pid in _pids():
        if pid == me:
            continue
        try:
            if (PROC / str(pid)).stat().st_uid != uid:
                continue
        except OSError:
            continue
        if names_session(_read(PROC / str(pid) / "cmdline"), marker, driver):
            found.append(pid)
            continue
        if tag is not None and raylet is not None:
            stat = _stat(pid)
            if len(stat) < 20 or int(stat[19]) < raylet[1]:
                continue
            # a child of the raylet (while it lives), or a process it started (its environment;
            # a process title may have overwritten that, hence the parent too)
            if int(stat[1]) == raylet[0] or tag in _read(PROC / str(pid) / "environ").split(b"\0"):
                found.append(pid)
    return found


def reap(marker: bytes, driver: int, raylet: tuple[int, int] | None,
         extra: list[int] | None = None) -> list[int]:
    """SIGTERM the session's processes (and ``extra``), then SIGKILL those still there after the
    grace time; the ones that outlived both (none, unless they are not ours to kill)."""
    targets = sorted({*session_processes(marker, driver, raylet), *(extra or [])})
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in targets:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + GRACE_S
        while targets and time.monotonic() < deadline:
            time.sleep(0.1)
            targets = [p for p in targets if (PROC / str(p)).exists() and not _zombie(p)]
        if not targets:
            break
    return targets


def _zombie(pid: int) -> bool:
    stat = _read(PROC / str(pid) / "stat")
    return stat[stat.rfind(b")") + 2:][:1] == b"Z" if stat else True


def watch(driver: int) -> None:
    """Wait for end of file on stdin, learning the session on the way; then reap it.

    While the driver lives, the session's processes are also noted every second (the raylet's
    children among them, told apart by their parent only while the raylet lives), so that one
    noted then is stopped even if it can no longer be told apart at the end."""
    marker = b""
    raylet: tuple[int, int] | None = None
    known: dict[int, int | None] = {}
    pending = b""
    last = 0.0
    while True:
        ready, _, _ = select.select([sys.stdin.buffer], [], [], 0.5)
        if ready:
            chunk = os.read(sys.stdin.fileno(), 4096)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    marker, raylet = line.strip(), None
        if not PROC.is_dir():
            continue
        if raylet is None:
            raylet = find_raylet(marker, driver)
        if raylet is not None and time.monotonic() - last > 1:
            last = time.monotonic()
            known.update({pid: _start_time(pid) for pid in session_processes(marker, driver, raylet)})
    if PROC.is_dir():
        if raylet is None:
            raylet = find_raylet(marker, driver)
        extra = [pid for pid, start in known.items() if start is not None and _start_time(pid) == start]
        targets = sorted({*session_processes(marker, driver, raylet), *extra})
        left = reap(marker, driver, raylet, extra)
        _log(marker, f"driver {driver} ended; stopped the {len(targets)} processes of the "
                     f"session (raylet {raylet}): {targets}; still running: {left}")


def _log(marker: bytes, line: str) -> None:
    """A line in the session's log folder (when known), next to Ray's own logs."""
    folder = Path(os.fsdecode(marker)) / "logs"
    if marker and folder.is_dir():
        try:
            with open(folder / "fashion_reaper.log", "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        except OSError:
            pass


def _main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the driver; the pipe tells us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a group kill must not stop the clean-up
    watch(int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
