"""The model: attribute taxonomies, the model spec, ``Product`` and input preparation, the
``FashionModel`` network, decoding with applicability and abstention, and autocast precision.

May import: ``fashion.contract``, ``fashion.data``, ``fashion.errors``, ``fashion._util``.
Exports ``FashionModel``, ``Product`` and the spec types.
"""

from __future__ import annotations
