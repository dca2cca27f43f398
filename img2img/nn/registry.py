"""Name -> builder registry for generators and discriminators.

Architecture modules decorate a builder function with ``@register_generator("name")`` or
``@register_discriminator("name")``; callers then build a network from a config string with
``build_generator("name", **kwargs)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from img2img.errors import UsageError

Builder = Callable[..., nn.Module]

_GENERATORS: dict[str, Builder] = {}
_DISCRIMINATORS: dict[str, Builder] = {}


def _register(table: dict[str, Builder], kind: str, name: str) -> Callable[[Builder], Builder]:
    def decorator(fn: Builder) -> Builder:
        if name in table:
            raise ValueError(f"{kind} {name!r} is already registered")
        table[name] = fn
        return fn

    return decorator


def _build(table: dict[str, Builder], kind: str, name: str, kwargs: dict) -> nn.Module:
    _accepted(table, kind, name, {})  # an unknown name is a usage error
    builder = table[name]
    params = inspect.signature(builder).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not accepts_any:
        unknown = sorted(k for k in kwargs if k not in params)
        if unknown:
            valid = ", ".join(params) or "(none)"
            raise TypeError(
                f"{kind} {name!r} got unknown argument(s) {', '.join(unknown)}; "
                f"valid arguments: {valid}"
            )
    return builder(**kwargs)


def _accepted(table: dict[str, Builder], kind: str, name: str, candidates: dict) -> dict:
    if name not in table:
        known = ", ".join(sorted(table)) or "(none)"
        raise UsageError(f"unknown {kind} {name!r}; known {kind}s: {known}")
    params = inspect.signature(table[name]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(candidates)
    return {k: v for k, v in candidates.items() if k in params}


def generator_arguments(name: str, **candidates) -> dict:
    """The entries of ``candidates`` that generator ``name`` takes: a caller offers every
    setting it has (``ngf``, ``norm``, ``upsample``, ``num_downs``, ...) and the
    architecture's builder keeps the ones in its signature."""
    return _accepted(_GENERATORS, "generator", name, candidates)


def discriminator_arguments(name: str, **candidates) -> dict:
    """The entries of ``candidates`` that discriminator ``name`` takes (see
    :func:`generator_arguments`)."""
    return _accepted(_DISCRIMINATORS, "discriminator", name, candidates)


def register_generator(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``fn`` as the builder of generator ``name``."""
    return _register(_GENERATORS, "generator", name)


def register_discriminator(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``fn`` as the builder of discriminator ``name``."""
    return _register(_DISCRIMINATORS, "discriminator", name)


def build_generator(name: str, **kwargs) -> nn.Module:
    """Build the generator registered as ``name`` with keyword arguments ``kwargs``.

    Raises ``UsageError`` for an unknown name and ``TypeError`` for an unknown argument.
    """
    return _build(_GENERATORS, "generator", name, kwargs)


def build_discriminator(name: str, **kwargs) -> nn.Module:
    """Build the discriminator registered as ``name`` with keyword arguments ``kwargs``.

    Raises ``UsageError`` for an unknown name and ``TypeError`` for an unknown argument.
    """
    return _build(_DISCRIMINATORS, "discriminator", name, kwargs)


def list_generators() -> list[str]:
    """Sorted names of all registered generators."""
    return sorted(_GENERATORS)


def list_discriminators() -> list[str]:
    """Sorted names of all registered discriminators."""
    return sorted(_DISCRIMINATORS)
