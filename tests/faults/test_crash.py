"""kill -9 at injected points (FASHION_FAULT_INJECT) of `fashion predict`, save_bundle and
`fashion push`, in real subprocesses: the rerun or resume gives the uninterrupted result, the old
bundle survives, and the registry stays consistent (`fashion doctor` finds nothing left)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fashion.registry import save_bundle
from fashion.registry.local import LocalRegistry
from tests.faults import ledger
from tests.tiny_model import image, make_model

pytestmark = pytest.mark.slow  # real subprocesses: each one imports torch

ROOT = Path(__file__).resolve().parents[2]
PRELUDE = (
    "import sys; from fashion.contract.manager import register_plugin; from tests import tiny_plugin; "
    "register_plugin(tiny_plugin, name='tests.tiny_plugin'); "
)


def _fashion(args: list[str], point: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FASHION_FAULT_INJECT", None)
    if point:
        env["FASHION_FAULT_INJECT"] = point
    code = PRELUDE + f"from fashion.cli import main; main({args!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def _python(code: str, point: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if point:
        env["FASHION_FAULT_INJECT"] = point
    return subprocess.run([sys.executable, "-c", PRELUDE + code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def setup(plugin, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("crash")
    for color in ("red", "blue"):
        image(color).save(folder / f"{color}.png")
    (folder / "broken.png").write_bytes(b"junk")
    rows = ["id,images,title"] + [
        f"r{i},{['red.png', 'blue.png', 'broken.png', ''][i % 4]},{'' if i % 8 == 7 else f'item {i}'}"
        for i in range(20)]
    (folder / "m.csv").write_text("\n".join(rows) + "\n")
    return save_bundle(make_model(0), folder / "bundle"), folder


def _scrub(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("point", ["predict.partial-line"])
def test_predict_killed_then_resumed(point: str, setup, tmp_path: Path) -> None:
    bundle, folder = setup
    full, out = tmp_path / "full.jsonl", tmp_path / "out.jsonl"
    args = [str(bundle), str(folder / "m.csv"), "--batch-size", "3"]
    assert _fashion(["predict", *args, "--out", str(full)]).returncode == 0
    killed = _fashion(["predict", *args, "--out", str(out)], point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = _fashion(["predict", *args, "--out", str(out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    same = (_scrub(out) == _scrub(full) and
            sorted(map(json.dumps, _scrub(tmp_path / "out.rejects.jsonl")))
            == sorted(map(json.dumps, _scrub(tmp_path / "full.rejects.jsonl"))))
    rows = {r["row"] for r in _scrub(out)} | {r["row"] for r in _scrub(tmp_path / "out.rejects.jsonl")}
    lost = 20 - len(rows)
    ledger.record("crash", f"kill -9 at {point}, then --resume", "predicted",
                  "lost-rows" if lost else "predicted" if same else "silent-wrong", lost=max(lost, 0))
    assert same and lost == 0 and "20 rows in" in resumed.stdout, resumed.stdout


def test_save_bundle_killed_keeps_the_old_bundle(setup, tmp_path: Path) -> None:
    bundle, _ = setup
    target = tmp_path / "b"
    save_bundle(make_model(0), target)
    before = (target / "fashion.json").read_text()
    code = (f"from tests.tiny_model import make_model; from fashion.registry import "
            f"save_bundle; save_bundle(make_model(1), {str(target)!r})")
    killed = _python(code, "bundle.staged")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    from fashion.registry.bundle import load_bundle

    ok = (target / "fashion.json").read_text() == before and load_bundle(target) is not None
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]
    assert leftovers  # the killed save's staging folder
    save_bundle(make_model(1), target)
    ok = ok and not [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]
    ledger.record("crash", "kill -9 in save_bundle before the swap", "predicted",
                  "predicted" if ok else "silent-wrong")
    assert ok


@pytest.mark.parametrize("point", ["push.blob:2"])
def test_push_killed(point: str, setup, fashion_home: Path) -> None:
    bundle, _ = setup
    killed = _fashion(["push", str(bundle), "team/crash"], point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    registry = LocalRegistry()
    found = registry.doctor()
    assert not found.ok  # the journal or the staging folder is reported
    again = _fashion(["push", str(bundle), "team/crash"])
    assert again.returncode == 0, again.stderr
    report = registry.doctor()
    revisions = registry.list_revisions("team/crash")
    ok = report.ok and len(revisions) == 1 and "latest" in revisions[0].tags
    from fashion.registry.bundle import load_bundle

    ok = ok and load_bundle("local://team/crash") is not None
    ledger.record("crash", f"kill -9 at {point}, then push again", "predicted",
                  "predicted" if ok else "silent-wrong")
    assert ok, (report.findings, revisions)


def test_push_killed_after_rename_is_finished_by_doctor(setup, fashion_home: Path) -> None:
    bundle, _ = setup
    assert _fashion(["push", str(bundle), "team/j"], "push.renamed").returncode == -signal.SIGKILL
    registry = LocalRegistry()
    assert registry._read_tags("team/j") == {}  # killed before its tags
    registry.doctor(repair=True)
    ok = registry.doctor().ok and "latest" in registry.list_revisions("team/j")[0].tags
    ledger.record("crash", "kill -9 between push's rename and its tags, doctor --repair",
                  "predicted", "predicted" if ok else "silent-wrong")
    assert ok
