"""Zero-shot votes (``--zero-shot``) from a tiny random open_clip model written to a local folder.
Its votes mean nothing about garments; the tests check that they are the model's own
image-prompt scores, that confidence and missing photos abstain, and that bad options are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from fashion import ConfigError, build_component
from fashion.attributes.mining.zeroshot import zero_shot_function
from fashion.contract.labelling import LabellingRow
from tests.tiny_open_clip import write_tiny_open_clip

pytest.importorskip("open_clip")

LABELS = ["v_neck", "crew_neck", "turtleneck"]
PROMPTS = ["a photo of a {label} garment", "a {label} top"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_open_clip(tmp_path_factory.mktemp("zero-shot") / "clip")


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
