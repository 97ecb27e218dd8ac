"""Add an attribute to a published model: its options (``config``), labels, synonyms and
scaffold (``labels``), the new head trained by MDMT (``pipeline``: train, gate, publish) and
the no-regression gate against the base (``regression``).

May import: ``fashion.training``, ``fashion.registry`` and the layers below; never
``fashion.serve`` or the Ray engine. Exports ``add_attribute``, ``AddAttributeConfig`` and
``AddAttributeResult``.
"""

from __future__ import annotations

from fashion.attributes.config import AddAttributeConfig
from fashion.attributes.pipeline import AddAttributeResult, add_attribute

__all__ = ["AddAttributeConfig", "AddAttributeResult", "add_attribute"]
