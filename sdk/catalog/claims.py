"""Vendor claims about one attribute, for mining labels from text (``add-attribute --from-text``).

:func:`write_claims` rewrites the text of one dataset of a generated catalog so that only part
of the products mention the attribute (``sleeve_length`` by default), the way vendor feeds do:
mixed words and languages ("Manches Longues", "Kurzarm", "sin mangas"), vendor slang that no
taxonomy knows ("Muscle Tee", "Cuffed Sleeves"), negations of other labels ("Not sleeveless"),
words in a care tail ("Care: wash long sleeve garments inside out") and some wrong claims
(mostly in descriptions, as pasted from another listing). The generator knows the truth.

The catalog itself is left as it is (its own seed-derived streams are not touched; this reads
``ground_truth.csv`` and draws from its own seed). Layout, under ``<catalog>/claims/<attribute>/``::

    train.csv, val.csv, test.csv     id,images,title,description,brand (no label column)
    truth.csv                        id,split,truth,claim,mentioned,correct,slang

``mentioned`` is 1 when the text claims a label (right or wrong; a negation or a care tail is
not a claim), ``claim`` is the first label claimed and ``correct`` whether it is the truth.
"""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

from fashion.catalog.build import read_ground_truth
from fashion.catalog.info import MANIFEST_COLUMNS, SPLITS
from fashion.errors import ConfigError

CLAIM_WORDS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "sleeve_length": {
        "sleeveless": {"en": ("Sleeveless", "No Sleeves"), "fr": ("Sans Manches",),
                       "de": ("Ärmellos",), "es": ("Sin Mangas",), "it": ("Senza Maniche",)},
        "short": {"en": ("Short Sleeve", "Short-Sleeved", "Cap Sleeves"), "fr": ("Manches Courtes",),
                  "de": ("Kurzarm",), "es": ("Manga Corta",), "it": ("Manica Corta",)},
        "long": {"en": ("Long Sleeve", "Long-Sleeved", "Full Sleeves"), "fr": ("Manches Longues",),
                 "de": ("Langarm",), "es": ("Manga Larga",), "it": ("Manica Lunga",)},
    },
}
"""Per attribute and label: the words vendors claim it with, by language (all in the taxonomy)."""
SLANG: dict[str, dict[str, tuple[str, ...]]] = {
    "sleeve_length": {"sleeveless": ("Muscle Tee", "Racerback"), "short": ("Elbow-Grazing Sleeves",),
                      "long": ("Cuffed Sleeves", "Thumbhole Sleeves")},
}
"""Vendor words no taxonomy knows (a team's rules file can)."""
NEGATED: dict[str, dict[str, tuple[str, ...]]] = {
    "sleeve_length": {"sleeveless": ("Not sleeveless.", "Pas sans manches."),
                      "short": ("No short sleeves here.",), "long": ("Without long sleeves.",)},
}
"""Sentences that deny a label: a reader that ignores negation is fooled by them."""
TRUTH_COLUMNS = ("id", "split", "truth", "claim", "mentioned", "correct", "slang")
_EXISTING = {
    "sleeve_length": re.compile(r"\b(?:sleeveless|short[- ]sleeved?|long[- ]sleeved?)\b\s?", re.I),
}


def _phrase(rng: random.Random, attribute: str, label: str, slang: float) -> tuple[str, bool]:
    if rng.random() < slang:
        return rng.choice(SLANG[attribute][label]), True
    languages = CLAIM_WORDS[attribute][label]
    language = "en" if rng.random() < 0.5 else rng.choice(sorted(languages))
    return rng.choice(languages[language]), False


def write_claims(
    catalog: str | Path, attribute: str = "sleeve_length", *, dataset: str | None = "sleeves",
    seed: int = 0, mention: float = 0.55, wrong: float = 0.12, both: float = 0.35,
    slang: float = 0.15, negation: float = 0.15, care: float = 0.1,
) -> dict[str, Path]:
    """Rewrite ``dataset``'s text with claims about ``attribute`` (module docstring); returns
    the manifests by split and ``"truth"``. ``dataset=None``: the products of every dataset
    that have the attribute. Shares: ``mention`` of the products claim a label,
    ``wrong`` of those claim a wrong one, ``both`` claim in title and description, ``slang`` of
    the claims use vendor slang; ``negation`` and ``care`` of all products get a distractor."""
    if attribute not in CLAIM_WORDS:
        raise ConfigError(f"claims can be written for {', '.join(CLAIM_WORDS)}, not {attribute!r}.")
    root = Path(catalog)
    rows = [r for r in read_ground_truth(root) if dataset in (None, r["dataset"]) and r[attribute]]
    if not rows:
        raise ConfigError(f"{root} has no product of dataset {dataset!r} with a {attribute}.")
    rng = random.Random(f"fashion-claims:{attribute}:{seed}")
    labels = sorted(CLAIM_WORDS[attribute])
    out = root / "claims" / attribute
    out.mkdir(parents=True, exist_ok=True)
    manifests: dict[str, list[list[str]]] = {split: [] for split in SPLITS}
    truth_rows: list[list[str]] = []
    for r in rows:
        truth = r[attribute]
        title = " ".join(_EXISTING[attribute].sub("", r["title"]).split()) or "Item"
        description = " ".join(_EXISTING[attribute].sub("", r["description"]).split())
        upper = title.isupper()
        claim, used_slang, sentences = "", False, []
        if rng.random() < mention:
            is_wrong = rng.random() < wrong
            claim = rng.choice([x for x in labels if x != truth]) if is_wrong else truth
            phrase, used_slang = _phrase(rng, attribute, claim, slang)
            in_title = rng.random() < (0.2 if is_wrong else 0.55)
            if in_title:
                title = f"{phrase.upper() if upper else phrase} {title}"
            else:
                sentences.append(f"{phrase}.")
            if in_title and rng.random() < both:  # a second claim, in the description
                second = truth if not is_wrong or rng.random() < 0.5 else claim
                sentences.append(f"{_phrase(rng, attribute, second, slang)[0]} design.")
        if rng.random() < negation:
            denied = rng.choice([x for x in labels if x != truth])
            sentences.append(rng.choice(NEGATED[attribute][denied]))
        if rng.random() < care:
            word = rng.choice(CLAIM_WORDS[attribute][rng.choice(labels)]["en"])
            sentences.append(f"Care: wash {word.lower()} garments inside out.")
        description = " ".join([description, *sentences]).strip()
        manifests[r["split"]].append([
            r["id"], "|".join(f"../../{p}" for p in r["images"].split("|")), title, description, r["brand"],
        ])
        truth_rows.append([r["id"], r["split"], truth, claim, str(int(bool(claim))),
                           str(int(claim == truth)) if claim else "", str(int(used_slang))])
    written: dict[str, Path] = {}
    for split, lines in manifests.items():
        written[split] = _write(out / f"{split}.csv", MANIFEST_COLUMNS, lines)
    written["truth"] = _write(out / "truth.csv", TRUTH_COLUMNS, truth_rows)
    return written


def _write(path: Path, header: tuple[str, ...], lines: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(lines)
    return path


def read_truth(path: str | Path) -> dict[str, dict[str, str]]:
    """``truth.csv`` by product id."""
    with Path(path).open(encoding="utf-8", newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


__all__ = ["CLAIM_WORDS", "NEGATED", "SLANG", "TRUTH_COLUMNS", "read_truth", "write_claims"]
