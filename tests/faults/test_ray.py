"""`fashion predict --engine ray` under bad inputs and interruptions: every row is predicted or
rejected exactly as `fashion predict` does it (rows in = predicted + rejected), inputs whose
relative paths flatten alike keep parts of their own, an OUT that is (or holds, or lies in) an
input is refused before anything is read, and a driver stopped by SIGTERM or killed with
SIGKILL leaves no process of its local Ray cluster behind; the next run finishes the rest."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fashion import FashionModel, Predictor
from fashion.errors import DataError
from fashion.registry import save_bundle
from tests.faults import ledger
from tests.faults.conftest import check_error, run_manifest
from tests.tiny_model import image

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = shutil.which("fashion", path=str(Path(sys.executable).parent))
HEADER = b"id,images,title\n"
GOOD = b"g1,good.png,red dress\ng2,blue.png,blue shirt\n"

# kind -> (file name, bytes): every file is one part of one Ray run, compared row by row with
# `fashion predict` on the same file
FILES: dict[str, tuple[str, bytes]] = {
    "unreadable image": ("corrupt.csv", HEADER + GOOD + b"b,corrupt.png,red\nc,gone.png,red\n"),
    "row with no image and no text": ("empty.csv", HEADER + b"b,,\n" + GOOD + b"c,,   \n"),
    "duplicate ids": ("dupes.csv", HEADER + b"d,good.png,red dress\nd,blue.png,blue shirt\n"
                      b"d,,\n"),
    "unterminated quote": ("quote.csv", HEADER + GOOD + b'b,"good.png,never closed\n'),
    "extra cell": ("cells.csv", HEADER + b"b,good.png,red,extra\n" + GOOD),
    "non-UTF-8 byte": ("latin.csv", HEADER + b"b,good.png,caf\xe9\n" + GOOD),
    "blank lines between rows": ("blank.csv", HEADER + b"\n" + GOOD + b"\n\n   \nz,good.png,x\n"),
    "header only": ("header.csv", HEADER),
    "title that is not text": ("types.jsonl", b'{"id": "b", "images": ["good.png"], "title": 5}\n'
                               b'{"id": "g", "images": ["good.png"], "title": "red"}\n'),
    "lone surrogate in an id and a column": (
        "surrogate.jsonl", b'{"id": "b\\ud800", "images": ["good.png"], "title": "red", '
        b'"note": "x\\udc80y"}\n{"id": "g", "images": ["gone\\udc80.png"], "title": "red"}\n'),
    "broken JSON line": ("broken.jsonl", b'{"id": "b", "title": \n{"id": "g", "title": "red"}\n'),
}
SHARDS, SHARD_ROWS = 8, 40  # the CLI runs that are stopped
# two inputs whose relative paths flatten to one name (a__b.csv and a/b.csv)
COLLIDING = ("a__b.csv", "a/b.csv")


@pytest.fixture(scope="module")
def cluster(plugin: None) -> Iterator[Any]:
    """One local Ray (2 CPUs) for the module; workers import the tests package."""
    import ray

    if ray.is_initialized():  # another module's cluster: share it
        yield ray
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def bundle(predictor: Predictor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_bundle(predictor.model, tmp_path_factory.mktemp("ray-bundle") / "bundle")


def _catalog(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image("red").save(folder / "good.png")
    image("blue").save(folder / "blue.png")
    (folder / "corrupt.png").write_bytes(b"this is not a png")
    for name, data in FILES.values():
        (folder / name).write_bytes(data)
    for rel in COLLIDING:
        (folder / rel).parent.mkdir(exist_ok=True)
        (folder / rel).write_bytes(HEADER + f"{rel},,red dress\n".encode())


def _ray_rows(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Output rows per input file (the source column is dropped; the part name starts with the
    input's relative path, flattened)."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(out.glob("*.parquet")):
        by_file.setdefault(path.name.rsplit(".", 3)[0], []).extend(pq.read_table(path).to_pylist())
    return by_file


@pytest.fixture(scope="module")
def ray_run(cluster: Any, bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fashion.predict.ray import run_ray_predict

    folder = tmp_path_factory.mktemp("ray-catalog")
    _catalog(folder / "in")
    summary = run_ray_predict(bundle, folder / "in", folder / "out", concurrency=1,
                              batch_size=4, block_rows=3)
    return summary, _ray_rows(folder / "out"), folder / "in"


@pytest.mark.parametrize("kind", list(FILES))
def test_bad_rows_as_fashion_predict(kind: str, ray_run: Any, predictor: Predictor,
                                     tmp_path: Path) -> None:
    summary, outputs, folder = ray_run
    name = FILES[kind][0]
    local = run_manifest(predictor, folder / name, tmp_path / "local.jsonl")
    assert local.kind == "ran", local.message
    # Arrow text is UTF-8: a lone surrogate of the input comes back escaped (\\udc80)
    want = {**{n: ("predicted", None) for n in local.predicted},
            **{n: ("rejected", r["reason"].encode("utf-8", "backslashreplace").decode())
               for n, r in local.rejected.items()}}
    rows = outputs.get(name, [])
    got = {r["row"]: (r["status"], r["reason"]) for r in rows}
    lost = len(set(want) - set(got)) + (len(rows) - len(got))  # missing, or present twice
    states = {state for state, _ in want.values()} or {"predicted"}
    expected = "rejected" if "rejected" in states else "predicted"
    observed = "lost-rows" if lost else "silent-wrong" if got != want else expected
    ledger.record("ray", kind, expected, observed, lost=lost)
    assert got == want, (kind, got, want)
    assert summary.rows_in == summary.predicted + summary.rejected


def test_part_names_that_flatten_alike(ray_run: Any) -> None:
    """a__b.csv and a/b.csv: two parts, each with its own row (before: one name, and the run
    ended with "came back incomplete")."""
    _, outputs, _ = ray_run
    rows = [r for key in outputs if key.startswith("a__b.csv") for r in outputs[key]]
    ids = sorted(r["id"] for r in rows)
    lost = len(set(COLLIDING) - set(ids)) + len(ids) - len(set(ids))
    observed = "lost-rows" if lost else "predicted" if ids == sorted(COLLIDING) else "silent-wrong"
    ledger.record("ray", "part names that flatten alike", "predicted", observed, lost=lost)
    assert ids == sorted(COLLIDING) and all(r["status"] == "predicted" for r in rows)


# ----------------------------------------------------------------------------- OUT vs inputs


def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if the engine gets as far as Ray: the guard must refuse first."""
    import fashion.predict.ray.engine as engine

    def started(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Ray was started before OUT was checked")

    monkeypatch.setattr(engine, "ray_session", started)


OUT_CASES = {
    "--out is the input folder": (lambda d: d, lambda d: d, "is the input"),
    "--out inside the input folder": (lambda d: d, lambda d: d / "preds", "inside the input"),
    "--out is the input file": (lambda d: d / "in.csv", lambda d: d / "in.csv", "is a file"),
    "--out holds the glob's inputs": (lambda d: str(d / "*.csv"), lambda d: d, "contains the input"),
    "--out is the bundle folder": (lambda d: d / "in.csv", None, "is the input"),
}


@pytest.mark.parametrize("kind", list(OUT_CASES))
def test_out_that_is_an_input_is_refused(kind: str, bundle: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from fashion.predict.ray import run_ray_predict

    _no_ray(monkeypatch)
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.csv").write_bytes(HEADER + GOOD)
    model = shutil.copytree(bundle, tmp_path / "bundle")
    make_input, make_out, match = OUT_CASES[kind]
    out = make_out(data) if make_out is not None else model
    before = {p: p.read_bytes() for p in [*data.rglob("*"), *model.rglob("*")] if p.is_file()}
    check_error("ray", kind, lambda: run_ray_predict(model, make_input(data), out), match)
    after = {p: p.read_bytes() for p in [*data.rglob("*"), *model.rglob("*")] if p.is_file()}
    assert after == before  # nothing written, nothing replaced


def test_rows_lost_inside_ray_name_the_parts(tmp_path: Path) -> None:
    """A Ray job that returns a part short of rows (a failed worker): the message names the
    part, its input and the count, keeps the complete parts and says what a re-run does."""
    from fashion.predict.ray.engine import RaySummary, _collect
    from fashion.predict.ray.inputs import PART, PART_ROWS, ROW, SOURCE, ManifestPart

    parts = [ManifestPart("/data/x.csv", "x.csv.0123456789.00000.parquet"),
             ManifestPart("/data/y.csv", "y.csv.9876543210.00000.parquet")]

    def block(part: ManifestPart, rows: list[int], total: int) -> pa.Table:
        return pa.table({"id": [f"r{r}" for r in rows], ROW: rows, SOURCE: [part.source] * len(rows),
                         PART: [part.name] * len(rows), PART_ROWS: [total] * len(rows),
                         "status": ["predicted"] * len(rows)})

    class Short:
        def iter_batches(self, **_: Any) -> Iterator[pa.Table]:
            yield block(parts[0], [1, 2], 2)
            yield block(parts[1], [1], 3)  # rows 2 and 3 of y.csv never come back

    check_error("ray", "rows lost inside Ray", lambda: _collect(
        Short(), tmp_path, "key", parts, RaySummary(), []), "00000.parquet (/data/y.csv): 1 of 3 rows")
    with pytest.raises(DataError, match="redoes only the unwritten parts"):
        _collect(Short(), tmp_path, "key", parts, RaySummary(), [])
    assert [p.name for p in tmp_path.glob("*.parquet")] == [parts[0].name]


# ----------------------------------------------------------------------------- the driver stopped


def _builtin_bundle(path: Path) -> Path:
    """A model of built-in components only (the CLI subprocess loads no test plugin)."""
    import torch

    torch.manual_seed(0)
    spec = {"views": {"full": {"name": "full", "options": {"size": 32}}},
            "backbones": {"image": {"name": "resnet18", "views": ["full"],
                                    "options": {"pretrained": False}}},
            "fusion": {"name": "concat"},
            "attributes": {"color": {"labels": ["red", "blue", "navy"]}}}
    return save_bundle(FashionModel(spec, pretrained=False).eval(), path)


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2:].split()[19])


def _descendants(root: int) -> dict[int, tuple[int | None, str]]:
    """Every process below ``root``: pid -> (start time, command)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
        except OSError:
            continue
        found[pid] = (_start_time(pid), command)
        todo += children.get(pid, [])
    return found


def _alive(seen: dict[int, tuple[int | None, str]]) -> dict[int, str]:
    out = {}
    for pid, (start, command) in seen.items():
        try:
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if _start_time(pid) == start and state != b"Z":
            out[pid] = command
    return out


def _stop_driver(how: signal.Signals, tmp_path: Path) -> tuple[int, str, dict[int, str], Path,
                                                                 list[str]]:
    """Run the CLI with a local Ray of its own, send ``how`` once its first part is written
    and its cluster's agents run; the exit code, stderr, the cluster's processes still alive
    20 s later, OUT and the command."""
    assert SCRIPT, "the fashion console script is not installed in this environment"
    bundle = _builtin_bundle(tmp_path / "bundle")
    data = tmp_path / "in"
    data.mkdir()
    image("red").save(data / "red.png")
    for k in range(SHARDS):  # one part each
        rows = [{"id": f"s{k}-{i}", "images": "red.png" if i % 5 else "gone.png",
                 "title": "red dress"} for i in range(SHARD_ROWS)]
        pq.write_table(pa.Table.from_pylist(rows), data / f"shard-{k}.parquet")
    out = tmp_path / "out"
    command = [SCRIPT, "predict", str(bundle), str(data), "--out", str(out), "--engine", "ray",
               "--concurrency", "1", "--batch-size", "4"]
    env = {**os.environ, "FASHION_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    seen: dict[int, tuple[int | None, str]] = {}
    deadline = time.monotonic() + 240
    while driver.poll() is None and time.monotonic() < deadline:
        seen.update(_descendants(driver.pid))
        agents = any("Agent" in c for _, c in seen.values())
        if agents and list(out.glob("*.parquet")):
            break
        time.sleep(0.1)
    assert driver.poll() is None, driver.communicate()[1][-3000:]
    seen.update(_descendants(driver.pid))
    driver.send_signal(how)
    _, err = driver.communicate(timeout=120)
    alive = _alive(seen)
    until = time.monotonic() + 20
    while alive and time.monotonic() < until:
        time.sleep(0.2)
        alive = _alive(seen)
    assert any("raylet" in c for _, c in seen.values()), seen  # the cluster was seen
    return driver.returncode, err, alive, out, command


def _rows_once(out: Path) -> tuple[int, int]:
    """(rows, rows written twice) over OUT."""
    rows = [(r["id"], r["row"]) for p in out.glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    return len(rows), len(rows) - len(set(rows))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_shuts_the_local_cluster_down_and_a_rerun_resumes(tmp_path: Path) -> None:
    code, err, alive, out, command = _stop_driver(signal.SIGTERM, tmp_path)
    clear = code == 128 + signal.SIGTERM and "Interrupted: stopped by SIGTERM" in err
    observed = ("traceback" if "Traceback" in err else "silent-wrong" if alive or not clear
                else "error")
    ledger.record("ray", "SIGTERM of the driver", "error", observed)
    assert not alive, alive  # no process of the run's cluster survives
    assert clear and "Traceback" not in err, (code, err[-3000:])

    env = {**os.environ, "FASHION_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    rows, twice = _rows_once(out)
    total = SHARDS * SHARD_ROWS
    lost = total - rows + twice
    observed = "lost-rows" if lost else "error" if again.returncode else "predicted"
    ledger.record("ray", "resume after SIGTERM", "predicted", observed, lost=lost)
    assert again.returncode == 0, again.stderr[-3000:]
    rejected = SHARDS * len(range(0, SHARD_ROWS, 5))  # gone.png
    assert again.stdout.startswith(f"{total} rows in = {total - rejected} predicted + "
                                   f"{rejected} rejected (")
    assert "from the earlier run" in again.stdout and rows == total and twice == 0


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_driver_leaves_no_ray_process(tmp_path: Path) -> None:
    """SIGKILL cannot be caught: the watchdog the driver started (fashion.predict.ray.reaper)
    stops the cluster's processes, the agents included."""
    code, err, alive, _, _ = _stop_driver(signal.SIGKILL, tmp_path)
    observed = "silent-wrong" if alive else "error"
    ledger.record("ray", "kill -9 of the driver", "error", observed)
    assert code == -signal.SIGKILL
    assert not alive, alive
