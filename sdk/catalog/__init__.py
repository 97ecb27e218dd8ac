"""A synthetic retail catalog with known ground truth, for demos, tests and benchmarks.

:func:`make_catalog` draws garments procedurally (PIL + numpy), writes vendor-style text with
the noise real feeds have (synonyms, ALL CAPS, HTML, mojibake, copy-paste, typos, missing
descriptions) and partitions the products by label into three datasets, as in multi-data
multi-task learning: each product is labeled in exactly one dataset, for that dataset's
attributes only. Layout of ``out``::

    catalog.json                      CatalogInfo: datasets, splits, row counts, settings
    ground_truth.csv                  every attribute of every product, shots and garment boxes
    images/p00012_0.png ...           one to three shots per product
    datasets/<dataset>/<split>.csv    id,images,title,description,brand,<its attributes>

Manifest ``images`` cells hold paths relative to the manifest file joined by ``|``; about 10% of
label cells use a vendor synonym or odd casing ("Ruby", "POLKA DOT") and about 3% are empty, so
read them through :mod:`fashion.model.taxonomy`. ``ground_truth.csv`` has one row per product:
its dataset and split, vendor and text, every attribute in canonical form (``sleeve_length`` is
empty for pants and skirts), ``pattern_scale`` (fine/coarse), ``color_rgb``, and per image
(``|``-joined, in order) the path relative to ``out``, the shot type (product, fabric, artistic,
model) and the garment box ``left,top,right,bottom`` in pixels (right/bottom exclusive), plus
``text_mentions``: the attributes the text states correctly. Everything is a pure function of
the seed: the same seed gives byte-identical files, whatever the number of workers.

Two options, off by default, make a catalog for measuring trust (docs/trust.md):
``label_noise`` flips a share of each attribute's train labels (``label_noise.csv`` lists
``id, dataset, split, manifest, line, attribute, true, given`` per flipped cell) and
``not_applicable`` puts a share of the pants and skirts (outside ``sleeve_length``'s
``applies_to``) in the ``sleeves`` dataset with a vendor "n/a" cell.

The package: :mod:`.info` (layout constants, :class:`CatalogInfo`), :mod:`.products` (sampling
the products), :mod:`.text` (vendor text and label cells), :mod:`.geometry` (garment outlines and
placement), :mod:`.render` (drawing the shots) and :mod:`.build` (the entry points).

May import: ``fashion.model`` (the taxonomies) and the layers below; nothing but the demo, the
CLI and the benchmarks imports it. Exports the names below; ``fashion make-catalog`` is
``fashion.cli.catalog``.
"""

from __future__ import annotations

from fashion.catalog.build import make_catalog, read_ground_truth
from fashion.catalog.info import (
    ATTRIBUTES,
    DATASET_SHARES,
    DATASETS,
    FORMAT_VERSION,
    GROUND_TRUTH_COLUMNS,
    MANIFEST_COLUMNS,
    NOISE_COLUMNS,
    NOISE_FILE,
    NOT_APPLICABLE_CELLS,
    SHOT_TYPES,
    SLEEVED,
    SPLITS,
    CatalogInfo,
    DatasetInfo,
    load_catalog,
)

__all__ = [
    "ATTRIBUTES",
    "DATASETS",
    "DATASET_SHARES",
    "FORMAT_VERSION",
    "GROUND_TRUTH_COLUMNS",
    "MANIFEST_COLUMNS",
    "NOISE_COLUMNS",
    "NOISE_FILE",
    "NOT_APPLICABLE_CELLS",
    "SHOT_TYPES",
    "SLEEVED",
    "SPLITS",
    "CatalogInfo",
    "DatasetInfo",
    "load_catalog",
    "make_catalog",
    "read_ground_truth",
]
