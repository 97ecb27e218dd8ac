"""The plugin contract: every hook a ``fashion`` plugin can implement.

A plugin is a module (or object) with functions marked ``@fashion.hookimpl`` whose names match
the specs below. Plugins are found through the ``fashion`` entry-point group of installed
distributions, and the built-in ones register through the very same hooks.

Each ``register_*`` hook receives a host-owned ``register`` callback. The host validates every
registration (required methods implemented, options model, name), refuses a duplicate name with
an error naming both distributions, and records which distribution registered what. Every
implementation is called (none stops the call early) and the order in which plugins are called
carries no meaning.

When hooks run:

- ``register_*`` component hooks run when the component table is first needed (the first
  ``list_components``, ``get_component_info`` or ``build_component`` of the process, e.g. when a
  model is built or a bundle loaded), not at import. They run again, every implementation,
  whenever the set of plugins changes (``register_plugin`` / ``unregister_plugin``), so an
  implementation must only call ``register`` and keep no state of its own.
- ``register_commands`` runs once per process, when ``fashion.cli`` is imported (the ``fashion``
  command builds its command group then), for every plugin loaded at that moment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    import click

    from fashion.contract.components import Component
    from fashion.contract.labelling import LabellingFunction
    from fashion.contract.training import LossCombiner, Sampler

hookspec = pluggy.HookspecMarker("fashion")
hookimpl = pluggy.HookimplMarker("fashion")


class Register(Protocol):
    """The callback handed to ``register_*`` hooks."""

    def __call__(
        self,
        component: type[Component] | type[Sampler] | type[LossCombiner] | type[LabellingFunction],
        name: str | None = None,
    ) -> None:
        """Register ``component`` under ``name`` (default: its ``name`` class attribute)."""


@hookspec
def register_backbones(register: Register) -> None:
    """Register feature extractors (:class:`fashion.Backbone` subclasses).

    Required: ``forward`` (and ``preprocess`` for text backbones) and ``output_dim`` set in
    ``__init__``; ``build_component`` runs two probe inputs through a new backbone and refuses it
    when the width differs from ``output_dim``.

    Runs when the component table is (re)built; see the module docstring. Example::

        import torch
        from fashion import ImageBackbone, ImageBackboneOptions, ImagePreprocessing, hookimpl

        class TinyOptions(ImageBackboneOptions):  # carries `preprocessing` (mean, std)
            width: int = 8

        class Tiny(ImageBackbone[TinyOptions]):  # sets Options; self.options is a TinyOptions
            name = "tiny"

            @classmethod
            def default_preprocessing(cls):  # optional: the default is ImageNet mean/std
                return ImagePreprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

            def __init__(self, options=None, *, assets=None, pretrained=True):
                super().__init__(options)
                self.net = torch.nn.Conv2d(3, self.options.width, 3)
                self.output_dim = self.options.width

            def forward(self, pixels):
                return self.net(pixels).mean((2, 3))

        @hookimpl
        def register_backbones(register):
            register(Tiny)
    """


@hookspec
def register_heads(register: Register) -> None:
    """Register attribute heads (:class:`fashion.Head` subclasses): vector -> logits.

    Runs when the component table is (re)built; see the module docstring. Example::

        import torch
        from fashion import Head, hookimpl

        class Bilinear(Head):
            name = "bilinear"

            def __init__(self, options=None, *, input_dim, labels):
                super().__init__(options, input_dim=input_dim, labels=labels)
                self.net = torch.nn.Linear(input_dim, len(self.labels))

            def forward(self, x):
                return self.net(x)

        @hookimpl
        def register_heads(register):
            register(Bilinear)
    """


@hookspec
def register_croppers(register: Register) -> None:
    """Register croppers (:class:`fashion.Cropper` subclasses): PIL image -> views.

    Runs when the component table is (re)built; see the module docstring. Example::

        from fashion import Cropper, View, hookimpl

        class TopHalf(Cropper):
            name = "top_half"

            def crop(self, image):
                w, h = image.size
                return [View(image.crop((0, 0, w, h // 2)).resize((224, 224)), box=(0, 0, w, h // 2))]

        @hookimpl
        def register_croppers(register):
            register(TopHalf)
    """


@hookspec
def register_fusions(register: Register) -> None:
    """Register fusions (:class:`fashion.Fusion` subclasses): named features -> one vector.

    Runs when the component table is (re)built; see the module docstring. Example::

        import torch
        from fashion import Fusion, hookimpl

        class Sum(Fusion):
            name = "sum"

            def __init__(self, options=None, *, input_dims):
                super().__init__(options, input_dims=input_dims)
                self.output_dim = max(input_dims.values())

            def forward(self, features, masks):
                out = 0
                for key, x in features.items():
                    x = torch.nn.functional.pad(x, (0, self.output_dim - x.shape[1]))
                    out = out + x * masks[key].unsqueeze(1)
                return out

        @hookimpl
        def register_fusions(register):
            register(Sum)
    """


@hookspec
def register_samplers(register: Register) -> None:
    """Register batch samplers (:class:`fashion.training.Sampler` subclasses) for training.

    A sampler turns dataset sizes into an epoch's schedule of steps; ``TrainConfig.sampler``
    names one. All implementations run, when the plugin manager first collects components.
    Example::

        from fashion import Sampler, hookimpl

        class Sequential(Sampler):
            name = "sequential"

            def schedule(self, sizes, batch_size, *, epoch, seed):
                return [((d, list(range(i, min(i + batch_size, n)))),)
                        for d, n in enumerate(sizes) for i in range(0, n, batch_size)]

        @hookimpl
        def register_samplers(register):
            register(Sequential)
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register loss combinations (:class:`fashion.training.LossCombiner` subclasses).

    A combination turns a step's per-attribute losses into one loss; ``TrainConfig.loss`` names
    one. All implementations run, when the plugin manager first collects components. Example::

        import torch
        from fashion import LossCombiner, hookimpl

        class Max(LossCombiner):
            name = "max"

            def forward(self, losses):
                return torch.stack(list(losses.values())).max()

        @hookimpl
        def register_losses(register):
            register(Max)
    """


@hookspec
def register_labelling_functions(register: Register) -> None:
    """Register labelling functions (:class:`fashion.LabellingFunction` subclasses).

    A labelling function votes one label of a new attribute per product, or abstains (``None``);
    ``fashion add-attribute NAME --from-text`` combines the votes of every function in a label
    model and trains the head on the mined labels. A rules file names a registered function by
    its name (``kind = "..."``) with its options; a function whose ``attributes`` lists NAME is
    also built on its own, with default options. All implementations run, when the plugin
    manager first collects components. Example::

        from fashion import LabellingFunction, hookimpl

        class HoodInTitle(LabellingFunction):
            name = "hood_in_title"
            attributes = ("hood",)  # built for `fashion add-attribute hood --from-text ...`

            def votes(self, rows):
                return ["hooded" if "hood" in row.text.get("title", "").lower() else None
                        for row in rows]

        @hookimpl
        def register_labelling_functions(register):
            register(HoodInTitle)
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``fashion`` CLI.

    Runs once per process when ``fashion.cli`` is imported; every implementation runs. The
    built-in ``box`` cropper adds ``fashion train-detector`` this way. Example::

        import click
        from fashion import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def hello():
                "Say hello."
                click.echo("hello from my plugin")
    """


