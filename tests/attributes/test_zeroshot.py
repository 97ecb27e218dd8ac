"""Zero-shot votes (``--zero-shot``) from a tiny random open_clip model written to a local folder.
Its votes mean nothing about garments; the tests check that they are the model's own
image-prompt scores, that confidence and missing photos abstain, and that bad options are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from fashion import ConfigError, WeightsNotFoundError, build_component
from fashion.attributes.mining.zeroshot import zero_shot_function
from fashion.contract.labelling import LabellingRow
from tests.attributes.test_add_attribute import base_model  # noqa: F401  (a fixture)
from tests.tiny_open_clip import write_tiny_open_clip

pytest.importorskip("open_clip")

LABELS = ["v_neck", "crew_neck", "turtleneck"]
PROMPTS = ["a photo of a {label} garment", "a {label} top"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # seed 4: its (arbitrary) votes split the red and blue photos of _hood_rows, so two labels
    # are mined; they are the wrong way round, which is what a random model's accuracy is worth
    return write_tiny_open_clip(tmp_path_factory.mktemp("zero-shot") / "clip", seed=4)


def _rows(folder: Path, n: int = 6) -> list[LabellingRow]:
    torch.manual_seed(0)
    rows = []
    for i in range(n):
        path = folder / f"p{i}.png"
        Image.fromarray((torch.rand(40, 40, 3) * 255).to(torch.uint8).numpy(), "RGB").save(path)
        rows.append(LabellingRow(id=f"p{i}", images=(str(path),), where=f"m.csv:{i + 2}"))
    (folder / "broken.png").write_bytes(b"not a png")
    rows.append(LabellingRow(id="no-photo", text={"title": "v-neck tee"}, where="m.csv:90"))
    rows.append(LabellingRow(id="broken", images=(str(folder / "broken.png"),), where="m.csv:91"))
    return rows


def test_votes_are_the_models_own_image_prompt_scores(clip: Path, tmp_path: Path) -> None:
    import open_clip

    rows = _rows(tmp_path)
    function = zero_shot_function("neckline", LABELS, PROMPTS, str(clip), min_confidence=0.0)
    votes = function.votes(rows)
    assert votes[-2:] == [None, None]  # no photo, an unreadable photo: abstain
    assert all(v in LABELS for v in votes[:-2])
    # the same scores computed with open_clip's own loader, transform and tokenizer
    reference, _, transform = open_clip.create_model_and_transforms(f"local-dir:{clip}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{clip}")
    reference.eval()
    with torch.no_grad():
        prompts = []
        for label in LABELS:
            texts = [p.replace("{label}", label.replace("_", " ")) for p in PROMPTS]
            e = torch.nn.functional.normalize(reference.encode_text(tokenizer(texts)), dim=-1).mean(0)
            prompts.append(torch.nn.functional.normalize(e, dim=-1))
        images = torch.stack([transform(Image.open(r.images[0])) for r in rows[:-2]])
        features = torch.nn.functional.normalize(reference.encode_image(images), dim=-1)
        expected = (reference.logit_scale.exp() * features @ torch.stack(prompts).T).softmax(-1)
    assert function.probabilities is not None
    torch.testing.assert_close(function.probabilities[:-2], expected, atol=1e-4, rtol=1e-4)
    assert votes[:-2] == [LABELS[int(i)] for i in expected.argmax(1)]
    assert function.describe()["prompts"]["v_neck"] == ["a photo of a v neck garment", "a v neck top"]


def test_only_confident_products_vote(clip: Path, tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    loose = zero_shot_function("neckline", LABELS, PROMPTS, str(clip), min_confidence=0.0)
    loose.votes(rows)
    assert loose.probabilities is not None
    top = loose.probabilities.max(1).values
    cut = float(top[:-2].median())
    strict = zero_shot_function("neckline", LABELS, PROMPTS, str(clip), min_confidence=cut)
    votes = strict.votes(rows)
    assert [v is not None for v in votes] == [bool(p >= cut) and bool(p > 0) for p in top]
    assert 0 < sum(v is not None for v in votes) < len(rows) - 2


def test_bad_zero_shot_options_are_named(clip: Path) -> None:
    with pytest.raises(ConfigError, match="has no \\{label\\} placeholder"):
        zero_shot_function("neckline", LABELS, ["a photo of a garment"], str(clip))
    with pytest.raises(ConfigError, match="--clip-model"):
        zero_shot_function("neckline", LABELS, PROMPTS, None)
    with pytest.raises(ConfigError, match=r"label_words name \['boat'\], not labels of neckline"):
        build_component("labelling_function", "zero_shot",
                        {"prompts": PROMPTS, "model": str(clip), "label_words": {"boat": "boat neck"}},
                        attribute="neckline", labels=LABELS)


def test_zero_shot_distils_into_a_head_on_the_base_models_backbones(base_model, clip: Path, tmp_path: Path,  # noqa: F811
                                                                    fashion_home: Path) -> None:
    """End to end through the CLI. The tiny model's votes are arbitrary, so the head's accuracy
    means nothing here; what is checked is that the votes become the training labels of an
    ordinary head on the base model's own backbones, gated and published with the prompts."""
    from click.testing import CliRunner

    from fashion.cli import cli
    from fashion.registry import load_bundle
    from tests.attributes.test_mining import _hood_rows

    manifest = _hood_rows(tmp_path / "shop", 40, 4, mention=0.0)  # the text says nothing: photos only
    result = CliRunner(env={"COLUMNS": "160"}).invoke(cli, [
        "add-attribute", "hood", "--labels", "hooded,plain", "--from-text", str(manifest),
        "--zero-shot", "a photo of a {label} jacket", "--zero-shot", "a {label} coat",
        "--clip-model", str(clip), "--zero-shot-confidence", "0", "--min-confidence", "0",
        "--base", "local://shop@base", "--push", "shop", "--tag", "hood", "--epochs", "3",
        "--project-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "zero_shot" in result.output and "published: local://shop@" in result.output
    bundle = load_bundle("local://shop@hood")
    assert "hood" in bundle.model.spec.attributes
    base = load_bundle("local://shop@base")
    assert {k: v.name for k, v in bundle.model.spec.backbones.items()} == \
        {k: v.name for k, v in base.model.spec.backbones.items()}  # the project's backbones, no open_clip
    record = bundle.index.provenance.model_dump()["mined_labels"]["hood"]
    assert record["source"] == "mined from text and zero-shot prompts"
    (zero_shot,) = [f for f in record["functions"] if f["kind"] == "zero_shot"]
    assert zero_shot["prompts"]["hooded"] == ["a photo of a hooded jacket", "a hooded coat"]
    assert zero_shot["options"]["model"] == str(clip)
    stats = {s["name"]: s for s in record["statistics"]}
    assert stats["zero_shot"]["votes"] == 40  # every product has a photo
    assert record["mined"] == 40


def test_zero_shot_without_products_or_confident_votes_trains_nothing(clip: Path, tmp_path: Path) -> None:
    from fashion.attributes.pipeline import add_attribute
    from fashion.errors import DataError
    from tests.attributes.test_mining import _hood_rows

    with pytest.raises(ConfigError, match="--zero-shot scores the photos of the products in --from-text"):
        add_attribute("hood", labels=["hooded", "plain"], zero_shot=PROMPTS, clip_model=str(clip),
                      base="local://unused", project_dir=tmp_path)
    manifest = _hood_rows(tmp_path / "shop", 12, 4, mention=0.0)
    with pytest.raises(DataError, match="was mined for hood; nothing was trained"):
        add_attribute("hood", labels=["hooded", "plain"], from_text=[manifest], zero_shot=PROMPTS,
                      clip_model=str(clip), zero_shot_confidence=1.0, base="local://unused",
                      project_dir=tmp_path)
    with pytest.raises(WeightsNotFoundError, match="has no open_clip_config.json and no open_clip_model.safetensors.*hf download ORG/REPO"):
        add_attribute("hood", labels=["hooded", "plain"], from_text=[manifest], zero_shot=PROMPTS,
                      clip_model=str(clip.parent), base="local://unused", project_dir=tmp_path)
    assert not list(tmp_path.glob("hood-mined*.csv"))
