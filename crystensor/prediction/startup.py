"""Start-up of predict: e3nn imported without ``torch._dynamo`` and sympy.

Importing e3nn the ordinary way costs about 1.4 s of a one-structure ``crystensor predict``;
:func:`import_e3nn_without_dynamo` avoids it by rebinding, only while e3nn is imported, one
torch decorator and the ``sympy`` module in ``sys.modules``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["import_e3nn_without_dynamo"]


def import_e3nn_without_dynamo() -> None:
    """Import e3nn without ``torch._dynamo`` and sympy (~1.4 s of the start-up of predict).

    - e3nn 0.6 decorates one function with ``torch.compiler.disable`` when it is imported, and
      that decorator imports ``torch._dynamo`` (~1 s). While e3nn is imported, the decorator is
      replaced by one that defers to the real one only once ``torch._dynamo`` is loaded (by
      ``torch.compile``, say): until then, nothing is compiled and the function runs as it is.
    - e3nn imports seven names from sympy (~0.4 s) for its alpha-beta spherical harmonics,
      which crystensor does not use. While e3nn is imported, ``sympy`` is a stand-in whose
      names import the real sympy when first called (:class:`_SympyName`).
    """
    if "e3nn" in sys.modules or "torch._dynamo" in sys.modules:
        return
    import functools

    import torch.compiler

    disable = torch.compiler.disable

    def deferred(fn=None, recursive=True, **options):
        if fn is None:
            return functools.partial(deferred, recursive=recursive, **options)
        disabled = []

        @functools.wraps(fn)
        def call(*args, **kwargs):
            if "torch._dynamo" not in sys.modules:
                return fn(*args, **kwargs)
            if not disabled:
                disabled.append(disable(fn, recursive, **options))
            return disabled[0](*args, **kwargs)

        return call

    stand_in = None if "sympy" in sys.modules else _SympyStandIn("sympy")
    torch.compiler.disable = deferred
    if stand_in is not None:
        sys.modules["sympy"] = stand_in
    try:
        import e3nn.o3
    except Exception:
        if stand_in is None:
            raise
        # an e3nn (or a module it imports) that uses sympy while it is imported: import it
        # with the real sympy
        for name in _e3nn_module_names():
            del sys.modules[name]
        sys.modules.pop("sympy", None)
        stand_in = None
        import e3nn.o3  # noqa: F401
    finally:
        torch.compiler.disable = disable
        if stand_in is not None and sys.modules.get("sympy") is stand_in:
            del sys.modules["sympy"]


def _e3nn_module_names() -> list[str]:
    return [m for m in sys.modules if m == "e3nn" or m.startswith("e3nn.")]


class _SympyStandIn(types.ModuleType):
    """``sympy`` while e3nn is imported: every name is a :class:`_SympyName`."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _SympyName(name)


class _SympyName:
    """A sympy name e3nn imported from :class:`_SympyStandIn`.

    The first call (e3nn's Legendre polynomials call ``symbols`` or ``Integer`` before using
    any constant) imports sympy and rebinds every stand-in name in e3nn's modules to the real
    object, so from then on e3nn runs on sympy itself.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(_resolve_sympy_names(), self.name)(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(getattr(_resolve_sympy_names(), self.name), attr)


def _resolve_sympy_names() -> types.ModuleType:
    """Import sympy, rebind the :class:`_SympyName` globals of e3nn to it, return it."""
    import sympy

    for module_name in _e3nn_module_names():
        module = sys.modules[module_name]
        if module is None:
            continue
        names = vars(module)
        for key, value in list(names.items()):
            if isinstance(value, _SympyName):
                names[key] = getattr(sympy, value.name)
    return sympy
