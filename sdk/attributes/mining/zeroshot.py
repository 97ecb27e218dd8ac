"""Zero-shot votes: an image-text model scores each product's photo against label prompts.

``fashion add-attribute NAME --zero-shot "a photo of a {label} garment" --labels a,b,c
--clip-model MODEL --from-text PRODUCTS`` builds one :class:`ZeroShotFunction`: every prompt
template is filled with each label's words (``{label}``; ``v_neck`` reads "v neck"), the text
tower embeds the prompts (several templates are averaged per label), the image tower embeds the
product's first photo, and the softmax of the scaled cosine similarities
(``logit_scale * image . prompt``, the model's own temperature) gives one probability per label.
The function votes the top label when its probability reaches ``min_confidence`` and abstains
otherwise (and on products without a readable photo). Its votes join the text rules' in the
label model (:mod:`fashion.attributes.mining.mine`); the head is then distilled on the
project's own backbones like any mined attribute.

The towers are the ``open_clip`` / ``open_clip_text`` backbones (extra ``open-clip``;
``plugins/open_clip.py``), built by name through the plugin manager from ``model`` (a local
folder or ``hf-hub:org/repo`` in the Hugging Face cache); any pair of registered backbones
whose text tower has ``encode(texts)`` and ``logit_scale`` and shares its embedding space with
the image tower can stand in (``image_backbone``, ``text_backbone``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import Field, field_validator
from torch import Tensor

from fashion.contract.base import ComponentOptions
from fashion.contract.labelling import LabellingFunction, LabellingRow
from fashion.errors import ConfigError, DataError

log = logging.getLogger("fashion.attributes")

ZERO_SHOT = "zero_shot"


class ZeroShotOptions(ComponentOptions):
    prompts: list[str] = Field(min_length=1, description="Prompt templates, each with {label}.")
    model: str = Field(description="The image-text weights: a local folder or hf-hub:org/repo.")
    min_confidence: float = Field(0.5, ge=0.0, le=1.0, description="Smallest top-label probability that votes.")
    label_words: dict[str, str] = Field(default_factory=dict, description="The words a label reads as in prompts.")
    image_backbone: str = "open_clip"
    text_backbone: str = "open_clip_text"
    batch_size: int = Field(32, ge=1)

    @field_validator("prompts")
    @classmethod
    def _has_label(cls, prompts: list[str]) -> list[str]:
        for prompt in prompts:
            if "{label}" not in prompt:
                raise ValueError(f"the prompt {prompt!r} has no {{label}} placeholder, e.g. "
                                 "'a photo of a {label} garment'")
        return prompts


class ZeroShotFunction(LabellingFunction):
    """Votes the label whose prompts the product's photo matches best (module docstring)."""

    name = ZERO_SHOT
    Options = ZeroShotOptions
    options: ZeroShotOptions

    def __init__(self, options: ZeroShotOptions | Mapping[str, Any] | None = None, *, attribute: str,
                 labels: Sequence[str], name: str | None = None) -> None:
        super().__init__(options, attribute=attribute, labels=labels, name=name)
        unknown = sorted(set(self.options.label_words) - set(self.labels))
        if unknown:
            raise ConfigError(f"zero-shot label_words name {unknown}, not labels of {attribute} "
                              f"({', '.join(self.labels)}).")
        self._towers: tuple[Any, Any] | None = None
        self.probabilities: Tensor | None = None
        """``(rows, labels)`` of the last :meth:`votes` call (zeros for rows without a photo)."""

    def prompt_texts(self, label: str) -> list[str]:
        words = self.options.label_words.get(label, label.replace("_", " "))
        return [p.replace("{label}", words) for p in self.options.prompts]

    def towers(self) -> tuple[Any, Any]:
        """The image and text backbones, built once (weights read from ``model``)."""
        if self._towers is None:
            from fashion.contract.manager import build_component

            image = build_component("backbone", self.options.image_backbone, {"model": self.options.model})
            text = build_component("backbone", self.options.text_backbone, {"model": self.options.model})
            if not callable(getattr(text, "encode", None)) or not hasattr(text, "logit_scale"):
                raise ConfigError(f"text backbone '{self.options.text_backbone}' has no encode(texts) "
                                  "and logit_scale: zero-shot needs an image-text model's text tower.")
            self._towers = (image.eval(), text.eval())
        return self._towers

    @torch.no_grad()
    def label_embeddings(self) -> Tensor:
        """``(labels, dim)``: each label's prompts embedded, normalized and averaged."""
        _, text = self.towers()
        rows = []
        for label in self.labels:
            prompts = torch.nn.functional.normalize(text.encode(self.prompt_texts(label)), dim=-1)
            rows.append(torch.nn.functional.normalize(prompts.mean(0), dim=-1))
        return torch.stack(rows)

    @torch.no_grad()
    def votes(self, rows: Sequence[LabellingRow]) -> list[str | None]:
        from fashion.data.images import load_image

        image, text = self.towers()
        prompts = self.label_embeddings()
        probabilities = torch.zeros(len(rows), len(self.labels))
        readable: list[tuple[int, Any]] = []
        unreadable = 0
        for i, row in enumerate(rows):
            if not row.images:
                continue
            try:
                readable.append((i, load_image(row.images[0], where=row.where or str(row.id))))
            except DataError as exc:
                unreadable += 1
                log.warning("zero-shot: %s abstains: %s", row.where or row.id, exc)
        if unreadable:
            log.warning("zero-shot: %d product(s) with a photo that cannot be read abstain", unreadable)
        size = self.options.batch_size
        for start in range(0, len(readable), size):
            chunk = readable[start:start + size]
            features = image(image.preprocess([photo for _, photo in chunk]))
            features = torch.nn.functional.normalize(features, dim=-1)
            scores = (text.logit_scale * features @ prompts.T).softmax(-1)
            probabilities[[i for i, _ in chunk]] = scores
        self.probabilities = probabilities
        best_p, best = probabilities.max(1)
        return [self.labels[int(b)] if float(p) > 0 and float(p) >= self.options.min_confidence else None
                for p, b in zip(best_p, best, strict=True)]

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["prompts"] = {label: self.prompt_texts(label) for label in self.labels}
        return out


def zero_shot_function(attribute: str, labels: Sequence[str], prompts: Sequence[str], model: str | None,
                       min_confidence: float = 0.5) -> ZeroShotFunction:
    """The zero-shot function of an add-attribute run (``--zero-shot``, ``--clip-model``)."""
    if not model:
        raise ConfigError("--zero-shot needs the image-text weights: --clip-model FOLDER (open_clip_config.json "
                          "+ open_clip_model.safetensors) or hf-hub:org/repo in the Hugging Face cache.")
    from fashion.contract.manager import build_component

    return build_component("labelling_function", ZERO_SHOT,
                           {"prompts": list(prompts), "model": model, "min_confidence": min_confidence},
                           attribute=attribute, labels=list(labels))


def run_functions(name: str, labels: Sequence[str], config: Any) -> list[LabellingFunction]:
    """The zero-shot function of an add-attribute run (``config.zero_shot`` prompts), or none."""
    if not config.zero_shot:
        return []
    if not config.from_text:
        raise ConfigError("--zero-shot scores the photos of the products in --from-text MANIFEST; give it "
                          "(their text feeds the taxonomy's and --rules' functions too).")
    return [zero_shot_function(name, labels, config.zero_shot, config.clip_model, config.zero_shot_confidence)]


__all__ = ["ZERO_SHOT", "ZeroShotFunction", "ZeroShotOptions", "run_functions", "zero_shot_function"]
