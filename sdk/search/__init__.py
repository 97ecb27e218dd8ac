"""Product vectors and filtered similarity search: ``fashion embed``, ``fashion index``,
``fashion similar`` (and ``POST /similar`` of ``fashion serve --index``).

- :mod:`.vectors`: the vectors file (Parquet) and the model revision it records.
- :mod:`.embed`: ``fashion embed``, the streaming writer of vectors files.
- :mod:`.index`: :class:`Index`, exact (``IndexFlatIP``) or HNSW faiss index with the predicted
  attributes, saved as a checked folder.
- :mod:`.filters`, :mod:`.plan`: attribute filters and the per-query plan (exact over few
  matching rows, filtered HNSW over many).
- :mod:`.backend`: faiss (the ``search`` extra), imported only here.

May import: ``fashion.predict`` and the layers below (it embeds with a Predictor); ``serve``
and the CLI import it. Exports ``Index``, ``Hit``, ``HnswParams``, ``VectorsInfo``,
``run_embed``, ``EmbedSummary``, ``model_revision``, ``read_info``, ``parse_conditions``.
"""

from __future__ import annotations

from fashion.search.embed import EmbedSummary, run_embed
from fashion.search.filters import parse_conditions
from fashion.search.index import HnswParams, Index
from fashion.search.plan import Hit
from fashion.search.vectors import VectorsInfo, model_revision, read_info

__all__ = [
    "EmbedSummary",
    "Hit",
    "HnswParams",
    "Index",
    "VectorsInfo",
    "model_revision",
    "parse_conditions",
    "read_info",
    "run_embed",
]
