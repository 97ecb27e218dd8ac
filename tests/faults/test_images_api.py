"""Bad images, Python API calls and CLI flags: a rejected row or a clear error naming the
product, never a traceback; images that are only unusual (16-bit, EXIF-rotated) are predicted
as their plain 8-bit upright twin."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fashion import FashionError
from fashion.data.images import load_image
from tests.faults import ledger
from tests.faults.conftest import check_error, check_rows, run_manifest
from tests.tiny_model import image


def _encode(im: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG whose header claims width x height pixels, in a few dozen bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


GREY = (128, 128, 128)


def _grey16() -> bytes:
    return _encode(Image.fromarray(np.full((20, 24), 128 * 257, dtype=np.uint16)))


def _tiff(array: np.ndarray) -> bytes:
    return _encode(Image.fromarray(array), "TIFF")


def _exif_rotated() -> bytes:
    im = Image.new("RGB", (24, 20), (220, 30, 30))
    im.paste((30, 40, 210), (0, 0, 12, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    return _encode(im, "JPEG", exif=exif.tobytes(), quality=95)


# kind -> (file bytes, "rejected" or the PIL image it must predict like, reason)
IMAGE_CASES: dict[str, tuple[bytes, Any, str | None]] = {
    "not an image": (b"this is not a png", "rejected", "cannot decode"),
    "zero bytes": (b"", "rejected", "empty"),
    "HTML saved as .png": (b"<html><body>404</body></html>", "rejected", "cannot decode"),
    "truncated PNG": (_encode(image("red", (64, 64)))[:60], "rejected", "cannot decode"),
    "truncated JPEG": (_encode(image("red", (64, 64)), "JPEG")[:200], "rejected", "cannot decode"),
    "decompression bomb (30000x30000 header)": (bomb_png(), "rejected", "pixel limit"),
    "16-bit grayscale PNG": (_grey16(), Image.new("RGB", (24, 20), GREY), None),
    "32-bit float TIFF in [0, 1]": (_tiff(np.full((20, 24), 128 / 255, dtype=np.float32)),
                                    Image.new("RGB", (24, 20), GREY), None),
    "32-bit int TIFF": (_tiff(np.full((20, 24), round(128 / 255 * (2**31 - 1)), dtype=np.int32)),
                        Image.new("RGB", (24, 20), GREY), None),
    "CMYK JPEG": (_encode(Image.new("CMYK", (24, 20), (0, 0, 0, 127)), "JPEG"), "predicted", None),
    "palette PNG with transparency": (
        _encode(Image.new("P", (24, 20), 0), "PNG", transparency=0), "predicted", None),
    "LA image": (_encode(Image.new("LA", (24, 20), (90, 200))), "predicted", None),
    "1-bit image": (_encode(Image.new("1", (24, 20), 1)), "predicted", None),
    "animated GIF": (_encode(Image.new("P", (24, 20)), "GIF", save_all=True,
                             append_images=[Image.new("P", (24, 20), 3)]), "predicted", None),
    "1x1 image": (_encode(Image.new("RGB", (1, 1), (9, 9, 9))), "predicted", None),
    "10000x1 image": (_encode(Image.new("RGB", (10000, 1), (9, 9, 9))), "predicted", None),
    "WebP": (_encode(image("red"), "WEBP"), "predicted", None),
}


@pytest.mark.parametrize("kind", list(IMAGE_CASES))
def test_image_files(kind: str, predictor, tmp_path: Path) -> None:
    data, expected, reason = IMAGE_CASES[kind]
    image("blue").save(tmp_path / "blue.png")
    (tmp_path / "x.img").write_bytes(data)
    (tmp_path / "m.csv").write_text("id,images\nx,x.img\nz,blue.png\n")
    outcome = run_manifest(predictor, tmp_path / "m.csv")
    state = "rejected" if expected == "rejected" else "predicted"
    check_rows("image", kind, outcome, {"x": state, "z": "predicted"}, reason)
    if isinstance(expected, Image.Image):  # must predict like its 8-bit twin, not clipped
        twin = predictor.predict([{"id": "x", "images": [expected]}])[0].to_dict()
        got = next(r for r in outcome.predicted.values() if r["id"] == "x")
        same = all(got["attributes"][a]["label"] == twin["attributes"][a]["label"]
                   and abs(got["attributes"][a]["score"] - twin["attributes"][a]["score"]) < 1e-3
                   for a in twin["attributes"])
        ledger.record("image", kind, "predicted", "predicted" if same else "silent-wrong")
        assert same, (got, twin)


def test_bomb_is_rejected_again_on_resume_not_hit_forever(predictor, tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    image("red").save(tmp_path / "red.png")
    (tmp_path / "m.csv").write_text("id,images\nb,bomb.png\nr,red.png\n")
    out = tmp_path / "o.jsonl"
    first = run_manifest(predictor, tmp_path / "m.csv", out)
    again = run_manifest(predictor, tmp_path / "m.csv", out, resume=True, overwrite=False)
    check_rows("image", "decompression bomb on --resume", again, {"b": "rejected", "r": "predicted"})
    assert again.rejected == first.rejected


def test_pixel_limit_is_configurable(predictor, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FASHION_MAX_IMAGE_PIXELS", "100")
    image("red", (20, 20)).save(tmp_path / "big.png")
    (tmp_path / "m.csv").write_text("id,images,title\nb,big.png,\nz,,text only\n")
    check_rows("image", "over FASHION_MAX_IMAGE_PIXELS", run_manifest(predictor, tmp_path / "m.csv"),
               {"b": "rejected", "z": "predicted"}, "FASHION_MAX_IMAGE_PIXELS")


def test_exif_orientation_is_applied() -> None:
    upright = load_image(_exif_rotated())
    ok = upright.size == (20, 24)
    top, bottom = upright.getpixel((10, 2)), upright.getpixel((10, 21))
    ok = ok and top[2] > 150 and bottom[0] > 150  # the blue left half is now on top
    ledger.record("image", "EXIF-rotated JPEG", "predicted", "predicted" if ok else "silent-wrong")
    assert ok, (upright.size, top, bottom)


def _predict(predictor: Any, products: Any, **options: Any) -> Callable[[], Any]:
    return lambda: predictor.predict(products, **options)


API_CASES: list[tuple[str, Any, dict[str, Any], str]] = [
    ("images=[None]", [{"id": "p1", "images": [None]}], {}, "product p1 image 0: the image is None"),
    ("images=[123]", [{"id": "p1", "images": [123]}], {}, "product p1 image 0: an image must be"),
    ("images is a numpy array", [{"id": "p1", "images": np.zeros((4, 4, 3), np.uint8)}], {},
     "product p1: 'images' is a numpy array"),
    ("numpy array in images", [{"id": "p1", "images": [np.zeros((4, 4, 3), np.uint8)]}], {},
     "product p1 image 0: a numpy array"),
    ("bomb bytes", [{"id": "p1", "images": [bomb_png()]}], {}, "product p1 image 0"),
    ("empty bytes", [{"id": "p1", "images": [b""]}], {}, "bytes are empty"),
    ("URL string", [{"id": "p1", "images": "https://example.com/x.png"}], {},
     "URLs are not fetched"),
    ("folder as image", [{"id": "p1", "images": ["/"]}], {}, "is a folder"),
    ("missing file", [{"id": "p1", "images": ["/no/such.png"]}], {}, "does not exist"),
    ("images is a set", [{"id": "p1", "images": {1}}], {}, "must be a path"),
    ("title is a number", [{"id": "p1", "title": 5}], {}, "product p1: field 'title' must be text"),
    ("title is a list", [{"id": "p1", "title": ["a"]}], {}, "field 'title' must be text"),
    ("description is bytes", [{"id": "p1", "description": b"x"}], {}, "field 'description'"),
    ("unknown field", [{"id": "p1", "titel": "x"}], {}, "titel"),
    ("product is an int", [5], {}, "product 0"),
    ("top_k=0", [{"title": "x"}], {"top_k": 0}, "top_k"),
    ("top_k=-1", [{"title": "x"}], {"top_k": -1}, "top_k"),
    ("top_k is a string", [{"title": "x"}], {"top_k": "3"}, "top_k"),
    ("batch_size=0", [{"title": "x"}], {"batch_size": 0}, "batch_size"),
    ("predict({})", {}, {}, "list of products"),
    ("predict(single dict)", {"id": "p1", "title": "x"}, {}, "predict([product])"),
    ("predict(a string)", "red dress", {}, "list of products"),
    ("predict(None)", None, {}, "list of products"),
]


@pytest.mark.parametrize(("kind", "products", "options", "match"), API_CASES,
                         ids=[c[0] for c in API_CASES])
def test_python_api(kind: str, products: Any, options: dict[str, Any], match: str,
                    predictor) -> None:
    check_error("python-api", kind, _predict(predictor, products, **options), match)


@pytest.mark.parametrize(
    ("kind", "products"),
    [("generator of products", ({"title": t} for t in ["a", "b"])),
     ("memoryview image", [{"images": [memoryview(_encode(image("red")))]}]),
     ("empty list", [])],
)
def test_python_api_accepts(kind: str, products: Any, predictor) -> None:
    check_error("python-api", kind, _predict(predictor, products), "", expected="predicted")


def test_nan_weights_abstain_with_strict_json(plugin, tmp_path: Path) -> None:
    import torch

    from fashion import Predictor
    from tests.tiny_model import make_model

    model = make_model(0)
    with torch.no_grad():
        next(iter(model.heads["color"].parameters())).fill_(float("nan"))
    image("red").save(tmp_path / "red.png")
    (tmp_path / "m.csv").write_text("id,images,title\na,red.png,red\n")
    outcome = run_manifest(Predictor(model), tmp_path / "m.csv")  # _lines refuses bare NaN
    check_rows("bundle", "NaN weights", outcome, {"a": "predicted"})
    color = outcome.predicted[1]["attributes"]["color"]
    ok = color["abstained"] and color["label"] is None
    ledger.record("bundle", "NaN weights abstain", "predicted", "predicted" if ok else "silent-wrong")
    assert ok and "non-finite" in " ".join(outcome.predicted[1]["diagnostics"]["notes"])


@pytest.mark.parametrize(
    ("kind", "device", "match"),
    [("Python API device=banana", "banana", "unknown device"),
     ("Python API device=cuda:0 without a GPU", "cuda:0", "cuda"),
     ("Python API device=tpu", "xla", "not supported")],
)
def test_devices(kind: str, device: str, match: str, plugin) -> None:
    import torch

    from fashion import Predictor
    from tests.tiny_model import make_model

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    check_error("python-api", kind, lambda: Predictor(make_model(0), device=device), match)


# ------------------------------------------------------------------------------ CLI flags


@pytest.fixture(scope="module")
def cli_setup(plugin, tmp_path_factory) -> tuple[Path, Path]:
    from fashion.registry import save_bundle
    from tests.tiny_model import make_model

    folder = tmp_path_factory.mktemp("cli")
    image("red").save(folder / "red.png")
    (folder / "m.csv").write_text("id,images,title\na,red.png,red\n")
    return save_bundle(make_model(0), folder / "bundle"), folder


def _invoke(command: Any, args: list[str]) -> None:
    """Run a command; its fashion error or click usage error (exit status 2) is raised."""
    result = CliRunner().invoke(command, args)
    if isinstance(result.exception, FashionError):
        raise result.exception
    if result.exit_code == 2:  # click usage error: a clear one-line message
        raise pytest.UsageError(result.output)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception


CLI_CASES: list[tuple[str, list[str], str]] = [
    ("--device banana", ["--out", "o.jsonl", "--device", "banana"], "unknown device"),
    ("--device cuda:0 without a GPU", ["--out", "o.jsonl", "--device", "cuda:0"], "cuda"),
    ("--out is the input", ["--out", "m.csv"], "is the input manifest"),
    ("--out is the input with --overwrite", ["--out", "m.csv", "--overwrite"], "is the input"),
    ("--rejects is the input", ["--out", "o.jsonl", "--rejects", "m.csv"], "is the input"),
    ("--rejects is --out", ["--out", "o.jsonl", "--rejects", "o.jsonl"], "same file"),
    ("--out is a link to the input", ["--out", "link.csv"], "is the input"),
    ("--out exists", ["--out", "exists.jsonl"], "already exists"),
    ("--rejects exists", ["--out", "new.jsonl", "--rejects", "exists.jsonl"], "already exists"),
    ("--out is a folder", ["--out", "."], "directory"),
    ("--resume with --overwrite", ["--out", "o.jsonl", "--resume", "--overwrite"], "contradict"),
    ("--top-k 0", ["--out", "o.jsonl", "--top-k", "0"], "top-k"),
    ("--batch-size 0", ["--out", "o.jsonl", "--batch-size", "0"], "batch-size"),
]


@pytest.mark.parametrize(("kind", "args", "match"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_flags(kind: str, args: list[str], match: str, cli_setup, monkeypatch) -> None:
    import torch

    from fashion.cli.predict import predict_command

    if "cuda" in kind and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    bundle, folder = cli_setup
    monkeypatch.chdir(folder)
    (folder / "exists.jsonl").write_text('{"row": 1}\n')
    if not (folder / "link.csv").exists():
        (folder / "link.csv").symlink_to(folder / "m.csv")
    before = (folder / "m.csv").read_bytes()

    check_error("cli", kind, lambda: _invoke(predict_command, [str(bundle), "m.csv", *args]), match)
    assert (folder / "m.csv").read_bytes() == before  # the input is never touched
    assert (folder / "exists.jsonl").read_text() == '{"row": 1}\n'


@pytest.mark.parametrize(
    ("kind", "args", "match"),
    [("input is missing", ["bundle", "missing.csv", "--out", "o.jsonl"], "does not exist"),
     ("input is a folder", ["bundle", ".", "--out", "o.jsonl"], "directory"),
     ("model folder is missing", ["nowhere", "m.csv", "--out", "o.jsonl"], "nowhere")],
)
def test_cli_paths(kind: str, args: list[str], match: str, cli_setup, monkeypatch) -> None:
    from fashion.cli.predict import predict_command

    _, folder = cli_setup
    monkeypatch.chdir(folder)

    check_error("cli", kind, lambda: _invoke(predict_command, args), match)
