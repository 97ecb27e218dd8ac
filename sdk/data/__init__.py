"""Files in: dataset manifests (``manifest``: the one CSV/JSONL/Parquet reader), image loading
and resizing (``images``), vendor text cleaning (``text``) and weight files (``weights``); and
the one guard on files out (``outputs``: no output is an input or another output).

May import: ``fashion.errors``, ``fashion._util``. Knows nothing of models: a manifest row
becomes a ``Product`` in ``fashion.model.inputs``. Exports nothing here; ``images``, ``text``
and ``weights`` are public helper modules for plugins.
"""
