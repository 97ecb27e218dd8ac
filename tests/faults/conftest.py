"""Fixtures of the fault suite: a briefly trained tiny model, manifests and the ledger summary."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fashion import FashionError, Predictor
from tests import tiny_plugin
from tests.faults import ledger
from tests.tiny_model import image, make_model


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if ledger.RECORDS:
        terminalreporter.write_sep("-", "fault suite")
        for area, records in sorted(ledger.by_area().items()):
            terminalreporter.write_line(f"  {area}: {ledger.line(records)}")
        terminalreporter.write_line(ledger.line())


@pytest.fixture(scope="module")
def plugin() -> Iterator[None]:
    from fashion.contract.manager import register_plugin, unregister_plugin

    register_plugin(tiny_plugin, name="tests.tiny_plugin")
    try:
        yield
    finally:
        unregister_plugin(name="tests.tiny_plugin")


@pytest.fixture(scope="module")
def predictor(plugin: None) -> Predictor:
    return Predictor(make_model(0))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with good.png (red) and blue.png, next to which manifests are written."""
    folder = tmp_path_factory.mktemp("catalog")
    image("red").save(folder / "good.png")
    image("blue").save(folder / "blue.png")
    return folder


@dataclass
class Outcome:
    """What a `fashion predict` run did: rows by number, or the error it stopped with."""

    kind: str  # "ran", "error" or "traceback"
    predicted: dict[int, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[int, dict[str, Any]] = field(default_factory=dict)
    rows_in: int = 0
    message: str = ""


def run_manifest(predictor: Predictor, manifest: Path, out: Path | None = None,
                 **options: Any) -> Outcome:
    from fashion.predict.batch import run_predict

    out = out or manifest.with_name(manifest.name + ".out.jsonl")
    rejects = options.pop("rejects", out.with_name(out.name + ".rejects.jsonl"))
    try:
        summary = run_predict(predictor, manifest, out, rejects=rejects, batch_size=3,
                              overwrite=options.pop("overwrite", True), **options)
    except FashionError as exc:
        return Outcome("error", message=str(exc))
    except Exception:  # noqa: BLE001 - a traceback is what the suite counts
        return Outcome("traceback", message=traceback.format_exc())
    predicted = {r["row"]: r for r in _lines(out)}
    rejected = {r["row"]: r for r in _lines(Path(rejects))}
    assert summary.predicted == len(predicted) and summary.rejected == len(rejected)
    return Outcome("ran", predicted, rejected, summary.rows_in)


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    # parse_constant refuses bare NaN/Infinity: the output must be strict JSON
    return [json.loads(line, parse_constant=_no_constants) for line in path.read_text().splitlines()]


def _no_constants(name: str) -> Any:
    raise AssertionError(f"bare {name} in the JSON output")


def check_rows(area: str, kind: str, outcome: Outcome, expected: Mapping[str, str],
               reason: str | None = None) -> None:
    """Record and assert one manifest kind: ``expected`` maps every row's id to
    ``predicted``/``rejected``; ``reason`` must appear in the rejected rows' reasons."""
    if outcome.kind != "ran":
        observed = "traceback" if outcome.kind == "traceback" else "error"
        ledger.record(area, kind, "rejected", observed)
        pytest.fail(f"{kind}: the run stopped: {outcome.message}")
    seen: dict[str, str] = {}
    for rows, state in ((outcome.predicted, "predicted"), (outcome.rejected, "rejected")):
        for record in rows.values():
            seen[str(record["id"])] = state
    lost = [i for i in expected if i not in seen]
    wrong = [i for i in expected if i in seen and seen[i] != expected[i]]
    balanced = outcome.rows_in == len(outcome.predicted) + len(outcome.rejected)
    lost_count = len(lost) + (0 if balanced else 1)
    states = set(expected.values())
    main = "rejected" if "rejected" in states else "predicted"
    observed = "lost-rows" if lost_count else "silent-wrong" if wrong else main
    ledger.record(area, kind, main, observed, lost=lost_count)
    assert not lost and balanced, (kind, lost, outcome.rows_in, outcome.predicted, outcome.rejected)
    assert not wrong, (kind, wrong, seen)
    assert outcome.rows_in == len(expected), (kind, outcome.rows_in, expected)
    if reason is not None:
        reasons = [r["reason"] for r in outcome.rejected.values()]
        assert reasons and all(reason.lower() in r.lower() for r in reasons), (kind, reasons)


def check_error(area: str, kind: str, call: Callable[[], Any], match: str,
                expected: str = "error") -> Any:
    """Record and assert one kind that must end in a clear error whose message contains
    ``match`` (or, with ``expected="predicted"``, must run)."""
    try:
        value = call()
    except (FashionError, pytest.UsageError) as exc:
        observed, message = "error", str(exc)
    except SystemExit as exc:
        observed, message = ("error" if exc.code else "predicted"), str(exc)
    except Exception:  # noqa: BLE001
        ledger.record(area, kind, expected, "traceback")
        raise
    else:
        observed, message = "predicted", ""
        ledger.record(area, kind, expected, observed if expected == "predicted" else "silent-wrong")
        assert expected == "predicted", f"{kind}: no error"
        return value
    ledger.record(area, kind, expected, observed if observed == expected else "silent-wrong")
    assert observed == expected, (kind, message)
    assert match.lower() in message.lower(), (kind, message)
    return None
