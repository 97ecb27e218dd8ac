"""``fashion serve --workers N``: several worker processes answer, and they stop with the server,
also when it is killed with SIGKILL (no orphans left bound to the port)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serve.conftest import ROOT, free_port

SCRIPT = str(Path(sys.executable).with_name("fashion"))


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (its new parent may not reap it)


def _get(port: int, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def builtin_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of built-in components only (workers are fresh processes: no test plugin there)."""
    from fashion import FashionModel
    from fashion.registry import save_bundle

    spec = {"views": {"full": {"name": "full", "options": {"size": 32}}},
            "backbones": {"image": {"name": "resnet18", "views": ["full"]}},
            "attributes": {"color": {"labels": ["red", "blue"]}}}
    return save_bundle(FashionModel(spec, pretrained=False), tmp_path_factory.mktemp("workers") / "bundle")


def test_a_worker_whose_server_died_before_it_started_watching_stops() -> None:
    """The worker is told which pid started it: one that is already reparented when it starts
    watching (the server was SIGKILLed while the worker imported and loaded) stops at once,
    instead of watching its new parent forever."""
    code = ("import time; from fashion.serve.server import exit_with_parent; "
            f"exit_with_parent({os.getpid()} + 1_000_000, poll_s=0.05, grace_s=5); time.sleep(60)")
    started = time.monotonic()
    worker = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert worker.returncode == -signal.SIGTERM, worker.stderr[-2000:]
    assert "is gone: this worker" in worker.stderr
    assert time.monotonic() - started < 30


def test_a_worker_keeps_serving_while_its_server_lives() -> None:
    code = ("import os, time; from fashion.serve.server import exit_with_parent; "
            "exit_with_parent(os.getppid(), poll_s=0.05, grace_s=5); time.sleep(1); print('alive')")
    worker = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert worker.returncode == 0 and worker.stdout.strip() == "alive", worker.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads worker pids from /proc (Linux)")
def test_workers_serve_and_stop_when_the_server_is_killed(builtin_bundle: Path, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    env = {**os.environ, "FASHION_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([SCRIPT, "serve", str(builtin_bundle), "--port", str(port), "--workers", "2",
                               "--log-level", "warning"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if _get(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("the server did not become ready:\n" + (tmp_path / "serve.log").read_text()[-3000:])
        status, model = _get(port, "/v1/model")
        assert status == 200 and "color" in json.dumps(model)
        workers = [pid for pid in _children(server.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(workers) == 2, workers

        server.send_signal(signal.SIGKILL)  # no chance to stop its workers itself
        server.wait(timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.3)
        assert not any(_alive(pid) for pid in workers), "workers outlived a killed `fashion serve`"
        with pytest.raises(OSError):
            _get(port, "/healthz")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads worker pids from /proc (Linux)")
def test_a_worker_that_cannot_load_the_model_stops_the_server_with_an_error(
        builtin_bundle: Path, tmp_path: Path) -> None:
    """The bundle folder is deleted and a worker dies: its replacement cannot load the model,
    every worker is stopped, and `fashion serve` says so in one line and exits non-zero."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(builtin_bundle, bundle)
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "FASHION_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    with log_path.open("wb") as log:
        server = subprocess.Popen([SCRIPT, "serve", str(bundle), "--port", str(port), "--workers", "2",
                                   "--log-level", "warning"], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                assert server.poll() is None, log_path.read_text()[-3000:]
                try:
                    if _get(port, "/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.3)
            workers = [pid for pid in _children(server.pid)
                       if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
            assert workers, log_path.read_text()[-3000:]
            shutil.rmtree(bundle)
            os.kill(workers[0], signal.SIGKILL)
            code = server.wait(timeout=120)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    output = log_path.read_text()
    assert code == 1, output[-3000:]
    assert "could not load the model" in output and "nothing is serving" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
