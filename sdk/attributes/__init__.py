"""Add an attribute to a published model: labels and synonyms (``labels``), the new head
trained by MDMT with the base frozen (``pipeline``), the gate against the base (``gate``) and
the publish step.

May import: ``fashion.training``, ``fashion.registry`` and the layers below.
Exports ``add_attribute`` and ``AddAttributeConfig``.
"""

from __future__ import annotations

from fashion.attributes.config import AddAttributeConfig
from fashion.attributes.pipeline import AddAttributeResult, add_attribute

__all__ = ["AddAttributeConfig", "AddAttributeResult", "add_attribute"]
