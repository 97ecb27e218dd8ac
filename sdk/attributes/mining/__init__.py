"""Labels for a new attribute mined from vendor text: labelling functions (``functions``: the
interface, keyword and regex functions, the taxonomy's words), a team's rules file
(``rules``), the label model that combines the votes and its statistics (``model``,
``stats``), and the cleanlab audit of the mined labels (``audit``).

``fashion add-attribute NAME --from-text MANIFEST`` runs them before training; see
``docs/add-attribute.md``.

May import: ``fashion.training``, ``fashion.registry``, ``fashion.trust`` and the layers below
(like ``fashion.attributes``). Exports the labelling-function interface, ``LabellingFunction``
and ``LabellingRow``.
"""

from __future__ import annotations

from fashion.contract.labelling import LabellingFunction, LabellingRow

__all__ = ["LabellingFunction", "LabellingRow"]
