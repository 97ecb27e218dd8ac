"""Predictor and `fashion predict`: batching, missing modalities, rejects, resume, workers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion import ConfigError, DataError, Predictor
from fashion.cli.predict import predict_command
from fashion.predict.predictor import ProductPrediction
from fashion.registry import save_bundle
from tests.tiny_model import as_plain, assert_close_predictions, image, products


def test_predict_matches_the_model_and_reports_missing_modalities(tiny_model):
    predictor = Predictor(tiny_model)
    results = predictor.predict(products(), batch_size=2, top_k=2)
    assert all(isinstance(r, ProductPrediction) for r in results)
    assert [r.id for r in results] == ["p1", "p2", "p3", "p4"]
    assert [r.diagnostics["missing"] for r in results] == [[], [], ["image"], ["text"]]
    assert_close_predictions(as_plain(results), as_plain(tiny_model.predict(products(), top_k=2)))
    assert all(len(p.top_k) == 2 for p in results[0].attributes.values())
    json.dumps([r.to_dict() for r in results])  # JSON-ready
    one_batch = predictor.predict(products(), batch_size=32, top_k=2)
    assert_close_predictions(as_plain(results), as_plain(one_batch))


def test_predict_with_dataloader_workers(tiny_model):
    predictor = Predictor(tiny_model)
    assert_close_predictions(as_plain(predictor.predict(products(), num_workers=2, batch_size=2)),
                             as_plain(predictor.predict(products())))


def test_from_pretrained_and_bad_input(tiny_model, tmp_path):
    predictor = Predictor.from_pretrained(save_bundle(tiny_model, tmp_path / "b"))
    assert predictor.attributes == ["color", "category"] and not predictor.model.training
    with pytest.raises(DataError, match="product bad image 0: image file .*missing.png does not exist"):
        predictor.predict([{"id": "bad", "images": [str(tmp_path / "missing.png")]}])
    with pytest.raises(ConfigError, match="FashionModel or a loaded bundle"):
        Predictor("not a model")


# ---------------------------------------------------------------------------- the command


@pytest.fixture
def catalog(tmp_path):
    """8 rows: row 2 has a corrupt image, row 4 a missing one, row 5 is text only."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name, color in [("red", "red"), ("blue", "blue"), ("navy", (20, 20, 90))]:
        image(color).save(folder / f"{name}.png")
    (folder / "corrupt.png").write_bytes(b"this is not a png")
    rows = [
        ("r1", "images/red.png", "red dress"),
        ("r2", "images/corrupt.png", "broken"),
        ("r3", "images/blue.png", "blue shirt"),
        ("r4", "images/gone.png", "lost"),
        ("r5", "", "plain trousers"),
        ("r6", "images/navy.png|images/red.png", ""),
        ("r7", "images/red.png", "red pants"),
        ("r8", "images/blue.png", ""),
    ]
    path = tmp_path / "catalog.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "images", "title"])
        writer.writerows(rows)
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(bundle: Path, catalog: Path, out: Path, *extra: str):
    result = CliRunner().invoke(predict_command, [str(bundle), str(catalog), "--out", str(out),
                                                  "--batch-size", "3", *extra])
    return result


def test_predict_command_rejects_bad_rows_and_keeps_the_rest(tiny_model, catalog, tmp_path):
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    out = tmp_path / "out" / "predictions.jsonl"
    result = _run(bundle, catalog, out)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "8 rows in = 6 predicted + 2 rejected"
    predictions = _lines(out)
    assert [(p["row"], p["id"]) for p in predictions] == [
        (1, "r1"), (3, "r3"), (5, "r5"), (6, "r6"), (7, "r7"), (8, "r8")]
    rejects = _lines(tmp_path / "out" / "predictions.rejects.jsonl")
    assert [(r["row"], r["id"], r["field"]) for r in rejects] == [(2, "r2", "images"), (4, "r4", "images")]
    assert "cannot decode image" in rejects[0]["reason"] and "corrupt.png" in rejects[0]["reason"]
    assert "gone.png does not exist" in rejects[1]["reason"]

    good = [{"id": "r1", "images": [str(catalog.parent / "images/red.png")], "title": "red dress"},
            {"id": "r3", "images": [str(catalog.parent / "images/blue.png")], "title": "blue shirt"},
            {"id": "r5", "title": "plain trousers"},
            {"id": "r6", "images": [str(catalog.parent / "images/navy.png"),
                                    str(catalog.parent / "images/red.png")]},
            {"id": "r7", "images": [str(catalog.parent / "images/red.png")], "title": "red pants"},
            {"id": "r8", "images": [str(catalog.parent / "images/blue.png")]}]
    expected = [r.to_dict() for r in Predictor(tiny_model).predict(good)]
    assert_close_predictions(predictions, expected)
    assert predictions[2]["diagnostics"]["missing"] == ["image"]
    assert set(predictions[0]["attributes"]["color"]) == {"label", "score", "top_k", "abstained"}

    again = _run(bundle, catalog, out)
    assert isinstance(again.exception, ConfigError) and "--resume" in str(again.exception)


def test_resume_after_an_interrupted_run_gives_the_same_output(tiny_model, catalog, tmp_path):
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    out = tmp_path / "predictions.jsonl"
    rejects = tmp_path / "rejects.jsonl"
    assert _run(bundle, catalog, out, "--rejects", str(rejects)).exit_code == 0
    full, full_rejects = _lines(out), _lines(rejects)

    text = out.read_text()
    cut = text.index("\n", text.index("\n") + 1) + 25  # two lines and part of the third
    out.write_text(text[:cut])
    rejects.write_text(rejects.read_text().splitlines(keepends=True)[0])  # row 2 only
    result = _run(bundle, catalog, out, "--rejects", str(rejects), "--resume")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "8 rows in = 6 predicted + 2 rejected (3 from the earlier run)"
    resumed = _lines(out)
    assert [p["row"] for p in resumed] == [p["row"] for p in full]
    assert_close_predictions(resumed, full)
    assert sorted(r["row"] for r in _lines(rejects)) == [r["row"] for r in full_rejects]


def test_predict_command_with_workers_and_jsonl(tiny_model, catalog, tmp_path):
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    jsonl = catalog.with_suffix(".jsonl")
    with open(catalog, newline="") as f, open(jsonl, "w") as g:
        for row in csv.DictReader(f):
            g.write(json.dumps(row) + "\n")
    serial, parallel = tmp_path / "serial.jsonl", tmp_path / "parallel.jsonl"
    assert _run(bundle, jsonl, serial).exit_code == 0
    result = _run(bundle, jsonl, parallel, "--workers", "2")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "8 rows in = 6 predicted + 2 rejected"
    assert [p["row"] for p in _lines(parallel)] == [1, 3, 5, 6, 7, 8]  # file order is kept
    assert_close_predictions(_lines(parallel), _lines(serial))


def test_bf16_autocast_predicts_like_fp32_and_bad_precision_is_refused(tiny_model, catalog, tmp_path,
                                                                     monkeypatch):
    fp32 = Predictor(tiny_model).predict(products())
    bf16 = Predictor(tiny_model, precision="bf16").predict(products())
    for a, b in zip(fp32, bf16, strict=True):
        for name, p in a.attributes.items():
            q = b.attributes[name]
            assert isinstance(q.score, float) and abs(p.score - q.score) < 0.05, name
            assert sum(s for _, s in q.top_k) <= 1.0 + 1e-5
    # autocast really ran: bf16 rounding moves some score
    assert any(p.score != b.attributes[n].score for a, b in zip(fp32, bf16, strict=True)
               for n, p in a.attributes.items())
    monkeypatch.setattr("fashion.predict.precision.cpu_bf16_native", lambda: False)
    auto = Predictor(tiny_model, precision="auto")  # fp32 on a CPU without native bf16
    assert_close_predictions(as_plain(auto.predict(products())), as_plain(fp32))
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        Predictor(tiny_model, precision="fp8")  # type: ignore[arg-type]

    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    out = tmp_path / "bf16.jsonl"
    result = _run(bundle, catalog, out, "--precision", "bf16")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "8 rows in = 6 predicted + 2 rejected"


@pytest.mark.parametrize(("products_in", "message"), [
    ({}, r"takes a list of products, got dict; wrap a single product in a list"),
    ({"title": "red dress"}, r"wrap a single product in a list: predict\(\[product\]\)"),
    ([{}], r"product 0 has no image and no text .* it is empty"),
    ([{"id": "sku-9"}], r"product sku-9 has no image and no text"),
    ([{"title": 123}], r"product 0.*title"),
    ("red dress", r"takes a list of products, got str"),
])
def test_predict_refuses_inputs_it_cannot_read(tiny_model, products_in, message):
    with pytest.raises(DataError, match=message):
        Predictor(tiny_model).predict(products_in)


def test_device_defaults_to_auto_like_training(tiny_model, tmp_path):
    import inspect

    import torch

    from fashion.predict.predictor import parse_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert parse_device("auto").type == expected
    assert inspect.signature(Predictor.from_pretrained).parameters["device"].default == "auto"
    predictor = Predictor.from_pretrained(save_bundle(tiny_model, tmp_path / "b"))
    assert predictor.model.device.type == expected


def test_predict_reports_progress_when_output_is_not_a_terminal(tiny_model, tmp_path, capsys,
                                                               monkeypatch):
    from fashion.predict.batch import run_predict

    monkeypatch.setenv("FASHION_PROGRESS_INTERVAL", "0")
    image("red").save(tmp_path / "red.png")
    manifest = tmp_path / "rows.csv"
    manifest.write_text("id,images,title\na,red.png,red dress\nb,,blue shirt\nc,,\n")
    summary = run_predict(Predictor(tiny_model), manifest, tmp_path / "out.jsonl", batch_size=1)
    assert summary.line() == "3 rows in = 2 predicted + 1 rejected"
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("predict: 1/3 rows (33%), ") and "rows/s" in lines[0]
    assert lines[-1].startswith("predict: 3/3 rows (100%)")
