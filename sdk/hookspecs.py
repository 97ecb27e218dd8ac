"""The plugin contract: every hook a ``fashion`` plugin can implement.

A plugin is a module (or object) with functions marked ``@fashion.hookimpl`` whose names match
the specs below. Plugins are found through the ``fashion`` entry-point group of installed
distributions, and the built-in ones register through the very same hooks.

Each ``register_*`` hook receives a host-owned ``register`` callback. The host validates every
registration, refuses a duplicate name with an error naming both distributions, and records
which distribution registered what. Every implementation is called (none stops the call early)
and the order in which plugins are called carries no meaning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    import click

    from .components import Component

hookspec = pluggy.HookspecMarker("fashion")
hookimpl = pluggy.HookimplMarker("fashion")


class Register(Protocol):
    """The callback handed to ``register_*`` hooks."""

    def __call__(self, component: type[Component], name: str | None = None) -> None:
        """Register ``component`` under ``name`` (default: its ``name`` class attribute)."""


@hookspec
def register_backbones(register: Register) -> None:
    """Register feature extractors (:class:`fashion.Backbone` subclasses).

    Called once per plugin; all implementations run. Example::

        from fashion import hookimpl, ImageBackbone, ComponentOptions

        class TinyOptions(ComponentOptions):
            width: int = 8

        class Tiny(ImageBackbone):
            name = "tiny"
            Options = TinyOptions

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

    Called once per plugin; all implementations run. Example::

        from fashion import hookimpl, Head

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

    Called once per plugin; all implementations run. Example::

        from fashion import hookimpl, Cropper, View

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

    Called once per plugin; all implementations run. Example::

        from fashion import hookimpl, Fusion

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
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``fashion`` CLI.

    Called once per plugin when the CLI is built; all implementations run. Example::

        import click
        from fashion import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def hello():
                "Say hello."
                click.echo("hello from my plugin")
    """


HOOKS = (
    "register_backbones",
    "register_heads",
    "register_croppers",
    "register_fusions",
    "register_commands",
)
