"""Partial fine-tuning of the ``bert`` text backbone: its layers are cut points."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fashion import ConfigError, build_component
from fashion.plugins.bert import Bert

WORDS = "red blue green black white cotton wool silk shirt dress coat scarf acme zeta long short".split()
TEXTS = [
    {"title": "red cotton shirt", "brand": "acme"},
    {"title": "long blue wool coat with a silk scarf", "description": "black and white"},
    {"title": "dress"},
]


@pytest.fixture(scope="module")
def tiny_bert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A six-layer, 32-wide BERT config and a word-piece tokenizer over a small vocabulary."""
    from transformers import BertConfig, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "with", "and", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=6, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    ).save_pretrained(str(folder))
    return folder


def tiny_bert(folder: Path, **options: object) -> Bert:
    torch.manual_seed(0)
    return build_component("backbone", "bert", {"max_length": 24, **options}, assets=folder, pretrained=False)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_the_layers_are_cut_points_and_the_split_forward_equals_the_full_one(tiny_bert_folder: Path, pooling: str) -> None:
    bert = tiny_bert(tiny_bert_folder, pooling=pooling).eval()
    assert bert.cut_points() == [f"layer.{i}" for i in range(6)]
    assert bert.resolve_cut(2) == "layer.4"
    batch = bert.preprocess(TEXTS)
    with torch.no_grad():
        whole = bert(batch)
        for cut in bert.cut_points():
            activations = bert.forward_below(batch, cut)
            assert activations.shape == (3, 24, 33)  # padded to max_length, the mask as a channel
            assert torch.allclose(bert.forward_above(activations, cut), whole, atol=1e-5)
        # a row's activations do not depend on its batch: alone, it gives the same features
        alone = bert.forward_above(bert.forward_below(bert.preprocess(TEXTS[2:]), "layer.5"), "layer.5")
        assert torch.allclose(alone, whole[2:], atol=1e-5)
    with pytest.raises(ConfigError, match="cut points"):
        bert.resolve_cut("layer.9")


def test_a_training_step_above_the_cut_changes_only_the_layers_above_it(tiny_bert_folder: Path) -> None:
    bert = tiny_bert(tiny_bert_folder)
    assert bert.freeze_below("layer.4") == "layer.4"
    bert.train()
    below_before, whole_before = bert.below_fingerprint("layer.4"), bert.fingerprint()
    before = {k: v.clone() for k, v in bert.state_dict().items()}
    batch = bert.preprocess(TEXTS)
    with torch.no_grad():
        activations = bert.forward_below(batch, "layer.4")  # what the cache stores
    head = torch.nn.Linear(bert.output_dim, 2)
    params = [p for p in bert.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD([*params, *head.parameters()], lr=0.5)
    loss = torch.nn.functional.cross_entropy(head(bert.forward_above(activations, "layer.4")), torch.tensor([0, 1, 0]))
    loss.backward()
    optimizer.step()
    changed = {k for k, v in bert.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(("encoder.encoder.layer.4.", "encoder.encoder.layer.5.")) for k in changed)
    assert bert.below_fingerprint("layer.4") == below_before and bert.fingerprint() != whole_before
    assert all(not p.requires_grad for p in bert.encoder.embeddings.parameters())
