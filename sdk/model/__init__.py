"""The model: attribute taxonomies (``taxonomy``, ``taxonomy_files``), the model spec
(``spec``), ``Product`` and input preparation (``inputs``), the ``FashionModel`` network
(``network``), decoding with applicability and abstention (``decode``), autocast precision
(``precision``) and int8 simulation for quantization-aware training (``quantization``).

May import: ``fashion.contract``, ``fashion.data``, ``fashion.errors``, ``fashion._util``.
Exports nothing here: ``fashion`` re-exports ``FashionModel``, ``Product`` and the spec types.
"""

from __future__ import annotations
