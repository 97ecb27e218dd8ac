"""docs/plugins.md, `register_heads`: the head plugin, the config that picks it, train, predict —
run as written (its code blocks are read from the page, not copied here)."""

from __future__ import annotations

import json
import re
import tomllib
import types
from pathlib import Path

from fashion.contract.manager import register_plugin, unregister_plugin

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def _section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"### `{title}(")
    end = text.index("\n### ", start + 1)
    return text[start:end]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_register_heads_walkthrough_trains_and_predicts_with_the_picked_head(tiny, catalog, tmp_path):
    from fashion import Predictor
    from fashion.training import TrainConfig, Trainer
    from tests.tiny_plugin import TINY_SPEC

    section = _section("register_heads")
    plugin_code, predict_code = _blocks(section, "python")
    module = types.ModuleType("docs_bilinear_head")
    exec(compile(plugin_code, str(DOC), "exec"), module.__dict__)  # noqa: S102 - the page's own code
    (config_toml,) = _blocks(section, "toml")
    picked = tomllib.loads(config_toml)["model"]["attributes"]
    register_plugin(module, name="docs_bilinear_head")
    try:
        spec = {**TINY_SPEC, "attributes": {**TINY_SPEC["attributes"], "color": picked["color"]}}
        spec["attributes"]["category"] = {"labels": ["dress", "shirt", "pants"]}  # the default head
        config = TrainConfig.parse({
            "model": spec,
            "datasets": [{"name": "colors", "path": catalog["colors"]},
                         {"name": "categories", "path": catalog["categories"]}],
            "epochs": 1, "batch_size": 8, "val_fraction": 0.25, "progress": False, "device": "cpu",
            "output_dir": tmp_path / "runs" / "bilinear",
        })
        result = Trainer(None, config).fit()
        assert result.bundle_path == tmp_path / "runs" / "bilinear" / "bundle"
        predictor = Predictor.from_pretrained(result.bundle_path)
        assert type(predictor.model.task("color")).__name__ == "Bilinear"
        assert type(predictor.model.task("category")).__name__ != "Bilinear"
        from fashion.registry.bundle_format import INDEX_NAME

        index = json.loads((result.bundle_path / INDEX_NAME).read_text())
        assert '"bilinear"' in json.dumps(index)  # the bundle records the head plugin's name
        # the page's predict snippet, pointed at this run's bundle
        code = predict_code.replace('"runs/bilinear/bundle"', repr(str(result.bundle_path)))
        namespace: dict[str, object] = {}
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102
        prediction = namespace["predictor"].predict([{"title": "Red cotton shirt"}])[0]  # type: ignore[attr-defined]
        assert prediction.attributes["color"].label in picked["color"]["labels"]
    finally:
        unregister_plugin(name="docs_bilinear_head")
