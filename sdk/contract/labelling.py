"""Labelling functions: the component kind that mines labels for a new attribute.

A labelling function reads products (cleaned vendor text, image paths, the raw manifest cells)
and votes one label per product, or abstains (``None``). ``fashion add-attribute NAME
--from-text`` builds functions from the attribute's taxonomy words, from a team's rules file and
from every plugin that registers one for NAME, combines their votes in a label model and trains
the new head on the mined labels (``fashion.attributes.mining``).

A plugin subclasses :class:`LabellingFunction`, implements :meth:`~LabellingFunction.votes` and
registers the class through the ``register_labelling_functions`` hook, like every other kind.
The built-in ``keyword`` and ``regex`` functions register the same way
(``fashion.attributes.mining.functions``).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fashion.contract.base import ComponentOptions, validate_options


@dataclass(frozen=True)
class LabellingRow:
    """One product as labelling functions see it.

    ``text`` holds the cleaned text fields (``title``, ``description``, ``brand``; through
    :func:`fashion.data.text.clean_text`: HTML, mojibake and pasted repeats removed), only those
    that are present. ``images`` are the row's image paths, resolved against the manifest.
    ``values`` are the raw manifest cells (any other column a rule's ``field`` may name) and
    ``where`` is ``file:line`` for messages.
    """

    id: str | None
    text: Mapping[str, str] = field(default_factory=dict)
    images: tuple[str, ...] = ()
    values: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""

    def field_text(self, name: str) -> str:
        """The cleaned text of ``name`` (a text field) or the raw cell as a string ('' when absent)."""
        if name in self.text:
            return self.text[name]
        value = self.values.get(name)
        return "" if value is None else str(value)


class LabellingFunction(abc.ABC):
    """Base class: a function that votes a label of one attribute per product, or abstains.

    Subclasses set the class attribute ``name`` (the registered kind, e.g. ``"keyword"``) and
    implement :meth:`votes`. ``Options`` (a :class:`fashion.ComponentOptions` subclass) holds
    what a rules file or a plugin configures. ``attributes`` lists the attributes whose
    ``add-attribute --from-text`` run builds this function on its own, with default options (a
    plugin's functions for ``neckline``); empty (the built-ins): built only from a rules file.

    An instance knows its ``attribute`` and the attribute's ``labels``; its ``name`` (default:
    the registered name) tells it apart in the statistics table and the provenance.
    """

    name: str = ""
    Options: ClassVar[type[ComponentOptions]] = ComponentOptions
    attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        options: ComponentOptions | Mapping[str, Any] | None = None,
        *,
        attribute: str,
        labels: Sequence[str],
        name: str | None = None,
    ) -> None:
        self.options = validate_options(self.Options, options, f"labelling function '{type(self).name}'")
        self.attribute = attribute
        self.labels = list(labels)
        self.name = name or type(self).name

    @abc.abstractmethod
    def votes(self, rows: Sequence[LabellingRow]) -> list[str | None]:
        """One vote per row, in order: a label of ``self.labels`` or ``None`` (abstain)."""

    def describe(self) -> dict[str, Any]:
        """What the provenance records about this function: its name, kind and options."""
        return {"name": self.name, "kind": type(self).name, "attribute": self.attribute,
                "options": self.options.model_dump(mode="json")}


__all__ = ["LabellingFunction", "LabellingRow"]
