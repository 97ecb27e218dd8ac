"""Run the server: load the model once (a bad MODEL fails as one line), then uvicorn with one
process, or ``--workers`` processes that each load their own copy from the config passed in
the environment (``FASHION_SERVE_CONFIG``).

With workers, uvicorn's supervisor restarts a worker that dies; when the new one cannot start
(its model no longer loads: the bundle was deleted, the disk is full) the supervisor stops every
worker and returns as if asked to stop. :class:`Supervisor` notes that, and :func:`run_server`
raises :class:`ServeStopped`, so ``fashion serve`` exits non-zero with one line instead of 0.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from fashion.errors import FashionError
from fashion.serve.config import CONFIG_ENV, ServeConfig, require_serve_extras

PROTOCOL = "fashion.serve.protocol:TimedH11Protocol"
PARENT_ENV = "FASHION_SERVE_PARENT"
"""The pid of the ``fashion serve`` process that started the workers (set before they spawn)."""


class ServeStopped(FashionError, RuntimeError):
    """``fashion serve`` stopped serving because of an error (not because it was asked to)."""


def _supervisor_class() -> Any:
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors.multiprocess import Multiprocess

    class Supervisor(Multiprocess):  # type: ignore[misc]
        """uvicorn's worker supervisor that remembers a worker which failed to start."""

        failed_pid: int | None = None

        def keep_subprocess_alive(self) -> None:
            super().keep_subprocess_alive()
            for process in self.processes:
                if process.exitcode == STARTUP_FAILURE and self.failed_pid is None:
                    self.failed_pid = process.pid

    return Supervisor


def _uvicorn_options(config: ServeConfig, log_level: str) -> dict[str, Any]:
    return {"host": config.host, "port": config.port, "log_level": log_level, "http": PROTOCOL,
            "timeout_graceful_shutdown": math.ceil(config.request_timeout_s)}


def run_server(config: ServeConfig, *, log_level: str = "info") -> None:
    """Load the model (a bad MODEL fails here, as one line) and serve until interrupted;
    raises :class:`ServeStopped` when serving stops because of an error."""
    require_serve_extras()
    import uvicorn

    from fashion.serve.app import create_app, load_predictor
    from fashion.serve.protocol import TimedH11Protocol

    config.api_key()  # a missing key fails before the model loads
    TimedH11Protocol.header_timeout_s = config.header_timeout_s
    predictor = load_predictor(config)
    print(
        f"fashion serve: {config.model} ({len(predictor.attributes)} attributes) on "
        f"http://{config.host}:{config.port}  page: /  API: /docs  workers: {config.workers}",
        file=sys.stderr,
    )
    options = _uvicorn_options(config, log_level)
    if config.workers == 1:
        server = uvicorn.Server(uvicorn.Config(create_app(config, predictor), **options))
        try:
            server.run()
        except SystemExit as exc:
            raise ServeStopped(f"fashion serve could not serve on {config.host}:{config.port} "
                               "(the error is above); nothing is listening") from exc
        if not server.started:
            raise ServeStopped(f"fashion serve could not start on {config.host}:{config.port} "
                               "(the error is above)")
        return
    del predictor  # checked; each worker loads its own copy
    os.environ[CONFIG_ENV] = json.dumps(config.model_dump(mode="json"))
    os.environ[PARENT_ENV] = str(os.getpid())
    settings = uvicorn.Config("fashion.serve.server:app_from_environment", factory=True,
                              workers=config.workers, **options)
    supervisor = _supervisor_class()(settings, sockets=[settings.bind_socket()])
    supervisor.run()
    if supervisor.failed_pid is not None:
        raise ServeStopped(
            f"a worker (pid {supervisor.failed_pid}) could not load the model {config.model} "
            "(its error is above), so every worker was stopped and nothing is serving; fix "
            "the model and start `fashion serve` again"
        )


def exit_with_parent(parent: int, *, poll_s: float = 0.5, grace_s: float = 10.0) -> None:
    """Stop this worker when ``parent``, the ``fashion serve`` process that started it, is gone.

    uvicorn stops its workers when ``fashion serve`` gets SIGTERM or Ctrl-C, but a SIGKILL (the
    OOM killer, ``kill -9``, a container runtime) leaves them orphaned, still bound to the port and
    answering with a model nobody manages. A daemon thread watches the parent pid: once this
    process's parent is no longer ``parent`` (it was reparented), the worker sends itself SIGTERM
    (uvicorn's graceful shutdown: requests in flight finish) and exits hard after ``grace_s`` if
    that did not end it. ``parent`` comes from the server, not from :func:`os.getppid` here: a
    worker still starting when the server was killed is already reparented, and would otherwise
    watch its new parent forever."""
    import logging
    import signal
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        logging.getLogger("fashion.serve").warning(
            "fashion serve (pid %s) is gone: this worker (pid %s) stops", parent, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(0)

    threading.Thread(target=watch, name="fashion-serve-parent-watch", daemon=True).start()


def app_from_environment() -> Any:
    """The app of one uvicorn worker, built from ``FASHION_SERVE_CONFIG`` (``--workers N``).

    The worker watches ``fashion serve`` (:func:`exit_with_parent`) before it imports the app and
    loads the model (seconds), so a server killed while its workers start does not leave them
    behind."""
    raw = os.environ.get(CONFIG_ENV)
    parent = os.environ.get(PARENT_ENV)
    if not raw or not parent:
        missing = " and ".join(name for name, value in ((CONFIG_ENV, raw), (PARENT_ENV, parent)) if not value)
        raise RuntimeError(f"{missing} not set; start workers with `fashion serve`")
    exit_with_parent(int(parent))
    from fashion.serve.app import create_app
    from fashion.serve.protocol import TimedH11Protocol

    config = ServeConfig.model_validate_json(raw)
    TimedH11Protocol.header_timeout_s = config.header_timeout_s
    return create_app(config)


__all__ = ["ServeStopped", "app_from_environment", "exit_with_parent", "run_server"]
