"""``add-attribute --from-text``: mine, write the training manifest, audit, record.

The add-attribute pipeline calls :func:`mine_for_run` before it trains (``--dry-run`` stops
there) and :func:`record_mining` after, so the published revision's provenance says the labels
were mined, with the rules, the statistics, the label model's weights and the audit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fashion.attributes.config import AddAttributeConfig
from fashion.attributes.mining.mine import MiningResult, mine_labels
from fashion.contract.labelling import LabellingFunction
from fashion.errors import ConfigError, DataError


def mined_manifest_path(project_dir: Path, name: str) -> Path:
    """``<name>-mined.csv`` in the project folder (``-2``, ``-3``... when taken)."""
    candidate, n = project_dir / f"{name}-mined.csv", 1
    while candidate.exists():
        n += 1
        candidate = project_dir / f"{name}-mined-{n}.csv"
    return candidate


def mine_for_run(
    name: str, labels: list[str], synonyms: dict[str, str], config: AddAttributeConfig,
    extra_functions: Sequence[LabellingFunction] = (),
) -> tuple[MiningResult, AddAttributeConfig]:
    """Mine ``name``'s labels from ``config.from_text``; unless ``dry_run``, write them as the
    run's training manifest (``config.data``). Nothing trains on nothing: no product mined, or
    fewer than two labels mined, is a :class:`DataError`."""
    if config.data and config.from_text:
        raise ConfigError("give --data (a labeled manifest) or --from-text (labels mined from "
                          "vendor text), not both; gold labels for the new attribute go in --validation.")
    if not config.from_text:
        raise ConfigError("--dry-run shows what --from-text would mine; give --from-text MANIFEST.")
    mining = mine_labels(
        name, labels, synonyms, config.from_text, rules=config.rules,
        min_confidence=config.min_confidence, label_model=config.label_model,
        extra_functions=extra_functions,
    )
    if config.dry_run:
        if config.base is not None:
            audit_with_base(mining, config)
        return mining, config
    if mining.mined_count == 0:
        raise DataError(f"no product of {', '.join(map(str, config.from_text))} was mined for "
                        f"{name}; nothing was trained. {mining.warnings[-1]} Run with --dry-run "
                        "to see every function's votes.")
    mined_labels = sorted({m for m in mining.mined if m})
    if len(mined_labels) < 2:
        raise DataError(f"only {mined_labels} was mined for {name} (of {', '.join(labels)}); a head "
                        "needs two labels. Add rules for the others (--rules) or lower --min-confidence.")
    project = config.project_dir if config.project_dir is not None else Path.cwd()
    path, written = mining.write_manifest(mined_manifest_path(project, name),
                                          text_dropout=config.text_dropout, seed=config.seed)
    if written == 0:
        raise DataError(f"the {mining.mined_count} mined products of {name} have no photo, and "
                        "their text is dropped for training (--text-dropout); nothing was trained.")
    return mining, config.model_copy(update={"data": [path]})


def audit_with_base(mining: MiningResult, config: AddAttributeConfig) -> None:
    """The cleanlab audit of the mined labels with the base model's photo features."""
    from fashion.registry import load_bundle

    assert config.base is not None
    hub = {"endpoint": config.endpoint, "token": config.token} if str(config.base).startswith("hf://") else {}
    audit_mined_labels(mining, load_bundle(config.base, **hub).model)


def audit_mined_labels(mining: MiningResult, model: Any) -> None:
    """Fill ``mining.suspects`` / ``audit_note`` (see :mod:`fashion.attributes.mining.audit`)."""
    from fashion.attributes.mining.audit import audit_mined
    from fashion.model.inputs import Product

    kept = [(r, m) for r, m in zip(mining.rows, mining.mined, strict=True) if m and r.images]
    products = [Product(id=r.id, images=list(r.images)) for r, _ in kept]
    try:
        mining.suspects, mining.audit_note = audit_mined(
            model, products, [m for _, m in kept], mining.labels, [r.id for r, _ in kept],
            [r.where for r, _ in kept])
    except DataError as exc:  # a photo that cannot be read: the audit says so, training decides
        mining.suspects, mining.audit_note = [], f"mined labels not audited: {exc}"
    mining.audited = mining.audit_note is None


def record_mining(run: Any, mining: MiningResult) -> None:
    """Audit with the trained run's model and write the mining record into its provenance."""
    audit_mined_labels(mining, run.model)
    recorded = dict(run.provenance.get("mined_labels") or {})  # earlier mined attributes stay
    recorded[mining.attribute] = mining.provenance()
    run.provenance["mined_labels"] = recorded


__all__ = ["audit_mined_labels", "audit_with_base", "mine_for_run", "mined_manifest_path", "record_mining"]
