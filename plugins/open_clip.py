"""Image-text backbones ``open_clip`` (the image tower) and ``open_clip_text`` (the text tower).

Any `open_clip <https://github.com/mlfoundations/open_clip>`_ model (extra ``open-clip``):
CLIP ViTs and ResNets, timm image towers, Hugging Face text towers. Output: the tower's
projected embedding (``embed_dim`` wide, not normalized); the two towers of one model share
their embedding space, which zero-shot labelling reads (``fashion add-attribute NAME
--zero-shot PROMPT``, :mod:`fashion.attributes.mining.zeroshot`).

Weights are never downloaded behind the user's back. The ``model`` option names, in order:

- a local folder holding ``open_clip_config.json`` (``model_cfg`` and ``preprocess_cfg``, the
  format open_clip publishes on the Hub) and ``open_clip_model.safetensors``;
- ``hf-hub:org/repo`` (or ``org/repo``): those two files in the Hugging Face cache; when they
  are not cached and the Hub is reachable (``HF_HUB_OFFLINE`` unset), ``hf-hub:`` downloads them.

The model's own preprocessing is part of the component: the square input ``image_size``, the
resize ``interpolation`` and the pixel ``preprocessing`` (mean, std) come from the config's
``preprocess_cfg`` (``image_size`` from ``vision_cfg`` when it does not say; ``interpolation``
is open_clip's own ``bicubic`` when it does not say), are written into the options (so a bundle
records them) and the config is saved beside the tensors. Options that contradict the config
are refused, and so is a bundle whose recorded options and config disagree; a config without
mean and std is refused rather than given ImageNet's. Views of another size are resized to
``image_size`` with the model's interpolation before normalization.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fashion import (
    BundleError,
    ComponentOptions,
    ConfigError,
    ImageBackbone,
    ImageBackboneOptions,
    ImagePreprocessing,
    TextBackbone,
    WeightsNotFoundError,
    hookimpl,
)
from fashion.contract.hookspecs import Register
from fashion.data.weights import load_state_dict_file, strip_prefix
from fashion.errors import MissingExtraError

CLIP_CONFIG = "open_clip_config.json"
CLIP_WEIGHTS = "open_clip_model.safetensors"
HF_PREFIX = "hf-hub:"
DEFAULT_INTERPOLATION = "bicubic"  # open_clip's PreprocessCfg default, used when the config is silent
Interpolation = Literal["bicubic", "bilinear", "nearest", "lanczos"]


def _require_open_clip() -> None:
    try:
        import open_clip  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            "the open_clip backbones need open_clip_torch; install the extra: "
            "pip install 'fashion-sdk[open-clip]'"
        ) from None


def _missing(source: str, detail: str) -> WeightsNotFoundError:
    repo = source[len(HF_PREFIX):] if source.startswith(HF_PREFIX) else source
    if not _is_repo_id(repo):
        repo = "ORG/REPO"
    return WeightsNotFoundError(
        f"open_clip model {source!r}: {detail}. Set the `model` option to a local folder holding "
        f"{CLIP_CONFIG} and {CLIP_WEIGHTS}, or, where there is internet, run `hf download {repo} "
        f"{CLIP_CONFIG} {CLIP_WEIGHTS}` and copy the Hugging Face cache (~/.cache/huggingface/hub) "
        "here (HF_HOME or HF_HUB_CACHE may point at it)."
    )


def _is_repo_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith(("/", ".", "~")) and not text.endswith("/")


def resolve_source(source: str | None) -> tuple[Path, Path]:
    """``(config file, weights file)`` of ``source``: a local folder, or a Hub repo in the Hugging
    Face cache (``hf-hub:`` downloads it when not cached and the Hub is reachable)."""
    if not source:
        raise ConfigError(
            "the open_clip backbone needs its weights: set the `model` option to a local folder "
            f"({CLIP_CONFIG} + {CLIP_WEIGHTS}) or to hf-hub:org/repo already in the Hugging Face cache."
        )
    folder = Path(source).expanduser()
    if folder.is_dir():
        found = [folder / CLIP_CONFIG, folder / CLIP_WEIGHTS]
        absent = [p.name for p in found if not p.is_file()]
        if absent:
            raise _missing(source, f"the folder {folder} has no {' and no '.join(absent)}")
        return found[0], found[1]
    repo = source[len(HF_PREFIX):] if source.startswith(HF_PREFIX) else source
    if not _is_repo_id(repo):
        raise _missing(source, "no such folder, and not a Hub repo id (org/repo)")
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    paths = []
    for name in (CLIP_CONFIG, CLIP_WEIGHTS):
        cached = try_to_load_from_cache(repo, name)
        if isinstance(cached, str) and Path(cached).is_file():
            paths.append(Path(cached))
            continue
        if not source.startswith(HF_PREFIX) or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
            raise _missing(source, f"{name} is not in the Hugging Face cache")
        try:
            paths.append(Path(hf_hub_download(repo, name)))
        except Exception as exc:  # offline, unknown repo, no such file: say which and what to do
            raise _missing(source, f"{name} could not be downloaded ({str(exc).splitlines()[0][:160]})") from None
    return paths[0], paths[1]


def read_config(path: Path) -> dict[str, Any]:
    """The ``{"model_cfg", "preprocess_cfg"}`` of an ``open_clip_config.json``, checked."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read as JSON ({exc}); replace it with the model's {CLIP_CONFIG}.") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        raise ConfigError(f"{path} has no `model_cfg` object; it must be open_clip's {CLIP_CONFIG} "
                          "(model_cfg + preprocess_cfg).")
    model_cfg = config["model_cfg"]
    if not isinstance(model_cfg.get("vision_cfg"), dict) or not isinstance(model_cfg.get("text_cfg"), dict):
        raise ConfigError(f"{path}: model_cfg needs `vision_cfg` and `text_cfg` objects (embed_dim, towers).")
    preprocess = config.get("preprocess_cfg")
    if not isinstance(preprocess, dict) or not {"mean", "std"} <= set(preprocess):
        raise ConfigError(
            f"{path}: `preprocess_cfg` must give the `mean` and `std` the model was trained with "
            "(no default is assumed); copy them from the model's card or pretrained config."
        )
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess}


def preprocess_of(config: Mapping[str, Any], where: Path) -> dict[str, Any]:
    """The model's own ``image_size``, ``interpolation`` and ``preprocessing`` (mean, std)."""
    pre = config["preprocess_cfg"]
    size = pre.get("size", config["model_cfg"]["vision_cfg"].get("image_size"))
    if isinstance(size, (list, tuple)) and len(set(size)) == 1:
        size = size[0]
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"{where}: a square input size is needed (preprocess_cfg.size or "
                          f"vision_cfg.image_size), got {size!r}.")
    interpolation = pre.get("interpolation", DEFAULT_INTERPOLATION)
    if interpolation not in Interpolation.__args__:  # type: ignore[attr-defined]
        raise ConfigError(f"{where}: preprocess_cfg.interpolation {interpolation!r} is not one of "
                          f"{', '.join(Interpolation.__args__)}.")  # type: ignore[attr-defined]
    try:
        preprocessing = ImagePreprocessing(mean=tuple(pre["mean"]), std=tuple(pre["std"]))
    except ValueError as exc:
        raise ConfigError(f"{where}: preprocess_cfg mean/std must be three numbers each ({exc}).") from None
    return {"image_size": size, "interpolation": interpolation, "preprocessing": preprocessing}


def build_clip(model_cfg: Mapping[str, Any]) -> nn.Module:
    """A randomly initialized open_clip model of ``model_cfg`` (nothing is downloaded: timm and
    Hugging Face towers are built without their own pretrained weights)."""
    _require_open_clip()
    from open_clip.coca_model import CoCa
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = deepcopy(dict(model_cfg))
    if "timm_model_name" in cfg["vision_cfg"]:
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    hf_text = "hf_model_name" in cfg["text_cfg"]
    if hf_text:
        cfg["text_cfg"]["hf_model_pretrained"] = False
    custom = bool(cfg.pop("custom_text", False)) or hf_text
    cls = (CoCa if "multimodal_cfg" in cfg else CustomTextCLIP) if custom else CLIP
    try:
        return cls(**cfg)
    except (TypeError, ValueError, KeyError, OSError) as exc:
        raise ConfigError(f"open_clip cannot build a model from this model_cfg: {str(exc)[:300]}") from None


def load_weights(clip: nn.Module, path: Path) -> None:
    """Load a full open_clip checkpoint into ``clip``, strictly: every tensor must fit as it is
    (a checkpoint of another input size is refused, not interpolated)."""
    from open_clip.model import convert_to_custom_text_state_dict

    try:
        state = strip_prefix(load_state_dict_file(path), "module.")
        if "positional_embedding" in state and not hasattr(clip, "positional_embedding"):
            state = convert_to_custom_text_state_dict(state)  # an older checkpoint of a custom-text model
        expected = clip.state_dict()
        state = {k: v for k, v in state.items() if k in expected or not k.endswith("position_ids")}
        clip.load_state_dict(state, strict=True)
    except WeightsNotFoundError:
        raise
    except Exception as exc:  # a damaged file or another model's tensors: name the file
        detail = " ".join(str(exc).split())[:300] or "unreadable"
        raise ConfigError(
            f"weights file {path} does not load into the model its {CLIP_CONFIG} describes "
            f"({type(exc).__name__}: {detail}). Use the {CLIP_WEIGHTS} published with that config."
        ) from None


def _config_for(options: Any, assets: Path | None, pretrained: bool, what: str) -> tuple[dict[str, Any], Path, Path | None]:
    """``(config, its path, the weights file or None)`` for a tower being built."""
    if assets is not None:
        path = assets / CLIP_CONFIG
        if not path.is_file():
            raise BundleError(f"the bundle's {what} assets ({assets}) have no {CLIP_CONFIG}; save the bundle again.")
        return read_config(path), path, None
    if not pretrained:
        raise BundleError(
            f"an {what} component built without pretrained weights needs its bundled {CLIP_CONFIG}; "
            "refusing to read files from outside the bundle. Save the bundle again with save_bundle."
        )
    config_path, weights = resolve_source(options.model)
    return read_config(config_path), config_path, weights


class OpenClipOptions(ImageBackboneOptions):
    model: str | None = Field(None, description="Local folder, or hf-hub:org/repo in the Hugging Face cache.")
    image_size: int | None = Field(None, ge=1, description="Input side; default: the model's own.")
    interpolation: Interpolation | None = Field(None, description="Resize filter; default: the model's own.")


class OpenClipTextOptions(ComponentOptions):
    model: str | None = Field(None, description="Local folder, or hf-hub:org/repo in the Hugging Face cache.")
    fields: list[str] = ["title", "description"]
    finetune: bool = False


class OpenClipImage(ImageBackbone[OpenClipOptions]):
    """The image tower of an open_clip model: views -> projected image embeddings."""

    name = "open_clip"
    options: OpenClipOptions

    def __init__(
        self,
        options: OpenClipOptions | Mapping[str, Any] | None = None,
        *,
        assets: Path | None = None,
        pretrained: bool = True,
    ) -> None:
        _require_open_clip()
        opts = options if isinstance(options, OpenClipOptions) else OpenClipOptions.model_validate(dict(options or {}))
        config, where, weights = _config_for(opts, assets, pretrained, "open_clip")
        own = preprocess_of(config, where)
        for key, value in own.items():
            given = getattr(opts, key)
            if given is not None and given != value:
                fix = ("the bundle's options and its config disagree: save the bundle again"
                       if assets is not None else f"leave `{key}` out: the model's own is used")
                error = BundleError if assets is not None else ConfigError
                raise error(f"open_clip {key} {_plain(given)} contradicts {where}, which says "
                            f"{_plain(value)}; {fix}.")
        super().__init__(opts.model_copy(update=own), assets=assets, pretrained=pretrained)
        self.config = config
        clip = build_clip(config["model_cfg"])
        if weights is not None:
            load_weights(clip, weights)
        self.visual = clip.visual
        self.output_dim = int(config["model_cfg"]["embed_dim"])

    def default_preprocessing(self) -> ImagePreprocessing:  # type: ignore[override]
        """The mean and std of this model's own ``preprocess_cfg`` (there is no class-wide default)."""
        return preprocess_of(self.config, Path(CLIP_CONFIG))["preprocessing"]

    @property
    def image_size(self) -> int:
        return int(self.options.image_size or 0)

    def save_assets(self, directory: Path) -> None:
        (directory / CLIP_CONFIG).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n",
                                             encoding="utf-8")

    def probe_inputs(self) -> list[Any]:
        from PIL import Image

        side = self.image_size
        return [Image.new("RGB", (side, side), (200, 30, 30)), Image.new("RGB", (side, side))]

    def preprocess(self, inputs: Sequence[Any]) -> Tensor:
        """Views resized to the model's ``image_size`` with its interpolation (shortest side,
        then a center crop, as open_clip does), then normalized with its mean and std."""
        from PIL import Image

        side = self.image_size
        method = Image.Resampling[str(self.options.interpolation).upper()]
        resized = []
        for image in inputs:
            image = image if image.mode == "RGB" else image.convert("RGB")
            if image.size != (side, side):
                w, h = image.size
                scale = side / min(w, h)
                image = image.resize((max(side, round(w * scale)), max(side, round(h * scale))), method)
                left, top = (image.width - side) // 2, (image.height - side) // 2
                image = image.crop((left, top, left + side, top + side))
            resized.append(image)
        return super().preprocess(resized)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.visual(pixels)


class OpenClipText(TextBackbone[OpenClipTextOptions]):
    """The text tower of an open_clip model: product text (or prompts) -> projected embeddings."""

    name = "open_clip_text"
    options: OpenClipTextOptions

    def __init__(
        self,
        options: OpenClipTextOptions | Mapping[str, Any] | None = None,
        *,
        assets: Path | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__(options, assets=assets, pretrained=pretrained)
        _require_open_clip()
        import open_clip

        self.config, where, weights = _config_for(self.options, assets, pretrained, "open_clip_text")
        clip = build_clip(self.config["model_cfg"])
        if weights is not None:
            load_weights(clip, weights)
        clip.visual = None  # the image tower lives in the open_clip image backbone
        self.clip = clip
        try:
            self.tokenizer = open_clip.get_tokenizer(f"local-dir:{where.parent}")
        except (OSError, ValueError) as exc:
            raise _missing(str(where.parent), f"its tokenizer is not available offline ({str(exc)[:160]})") from None
        self.output_dim = int(self.config["model_cfg"]["embed_dim"])
        if not self.options.finetune:
            self.clip.requires_grad_(False)

    @property
    def logit_scale(self) -> float:
        """The model's learned temperature of image-text similarities (exp of its log)."""
        return float(self.clip.logit_scale.detach().exp())

    def save_assets(self, directory: Path) -> None:
        (directory / CLIP_CONFIG).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n",
                                             encoding="utf-8")

    def text_of(self, fields: Mapping[str, str | None]) -> str:
        from fashion.data.text import clean_text

        return " ".join(clean_text(t) for t in (fields.get(f) for f in self.options.fields) if t)

    def preprocess(self, inputs: Sequence[Mapping[str, str | None]]) -> Tensor:
        return self.tokenizer([self.text_of(fields) for fields in inputs])

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Embeddings ``(N, embed_dim)`` of raw strings (prompts), not cleaned."""
        return self.forward(self.tokenizer(list(texts)))

    def forward(self, tokens: Tensor) -> Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.options.finetune):
            return self.clip.encode_text(tokens)


def _plain(value: Any) -> str:
    return str(value.model_dump()) if hasattr(value, "model_dump") else repr(value)


@hookimpl
def register_backbones(register: Register) -> None:
    register(OpenClipImage)
    register(OpenClipText)


@hookimpl
def register_labelling_functions(register: Register) -> None:
    from fashion.attributes.mining.zeroshot import ZeroShotFunction  # votes with these towers

    register(ZeroShotFunction)
