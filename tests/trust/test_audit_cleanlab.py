"""The audit's two rules on the same out-of-sample probabilities: cleanlab's
``find_label_issues`` and self-confidence over every row the model predicts otherwise."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fashion.errors import ConfigError
from fashion.trust.audit import (
    RANKERS,
    cleanlab_suspects,
    cross_fitted_probabilities,
    find_suspects,
)

pytest.importorskip("cleanlab")


def _noisy(n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.nn.functional.one_hot(y, 3).float() * 3 + torch.randn(n, 3)
    noisy = y.clone()
    flipped = torch.arange(0, n, 10)
    noisy[flipped] = (noisy[flipped] + 1) % 3
    return cross_fitted_probabilities(x, noisy, 3, folds=5), noisy, flipped


def test_cleanlab_lists_a_subset_of_the_contradicted_rows_scored_by_self_confidence() -> None:
    from cleanlab.filter import find_label_issues

    p, given, _ = _noisy()
    suspect, suggested, score, confident = cleanlab_suspects(p, given)
    expected = find_label_issues(given.numpy(), p.double().numpy(), filter_by="prune_by_noise_rate", n_jobs=1)
    assert suspect.tolist() == expected.tolist()
    rows = torch.arange(len(given))
    torch.testing.assert_close(score, 1 - p[rows, given], atol=1e-5, rtol=0)
    others = p.clone()
    others[rows, given] = -1
    assert suggested.tolist() == others.argmax(1).tolist()
    plain, _, _, plain_confident = find_suspects(p, given)
    assert bool((confident == plain_confident & suspect).all())
    assert 0 < int(suspect.sum()) <= int(plain.sum())  # a shorter list than "predicted otherwise"


@pytest.mark.parametrize("ranking", list(RANKERS))
def test_both_rules_find_the_flipped_labels_on_separable_features(ranking: str) -> None:
    p, given, flipped = _noisy()
    suspect, _, score, _ = RANKERS[ranking](p, given)
    listed = sorted(suspect.nonzero().flatten().tolist(), key=lambda i: -float(score[i]))
    top = listed[: round(1.5 * len(flipped))]
    assert len(set(top) & set(flipped.tolist())) >= 0.9 * len(flipped)


def test_an_unknown_ranking_is_refused() -> None:
    from fashion.trust.audit import audit_datasets

    with pytest.raises(ConfigError, match="unknown audit ranking 'margin'; choose one of cleanlab, self-confidence"):
        audit_datasets(None, [], ranking="margin")  # type: ignore[arg-type]


def test_the_audit_command_runs_the_ranking_it_is_given(tiny: object, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from fashion.cli import cli
    from fashion.registry import save_bundle
    from tests.tiny_model import image, make_model

    bundle = save_bundle(make_model(0), tmp_path / "bundle")
    for color in ("red", "blue"):
        image(color).save(tmp_path / f"{color}.png")
    manifest = tmp_path / "colors.csv"
    rows = [f"p{i},{c}.png,{c} item,{c if i % 10 else ('blue' if c == 'red' else 'red')}"
            for i, c in enumerate(["red", "blue"] * 15)]
    manifest.write_text("id,images,title,color\n" + "\n".join(rows) + "\n", encoding="utf-8")
    calls: list[int] = []

    def spy(p: torch.Tensor, given: torch.Tensor) -> tuple[torch.Tensor, ...]:
        calls.append(len(given))
        return find_suspects(p, given)

    monkeypatch.setitem(RANKERS, "cleanlab", spy)
    out = tmp_path / "suspects.csv"
    result = CliRunner().invoke(cli, ["audit", str(manifest), "--model", str(bundle), "--attribute", "color",
                                      "--ranking", "cleanlab", "--no-words", "--folds", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert calls == [30]  # the rule named on the command line ranked the 30 rows
    listed = list(csv.DictReader(out.open(encoding="utf-8")))
    assert listed and all(r["suggested"] != r["given"] for r in listed)
    result = CliRunner().invoke(cli, ["audit", str(manifest), "--model", str(bundle), "--ranking", "margin"])
    assert result.exit_code == 2 and "'margin' is not one of 'self-confidence', 'cleanlab'" in result.output
