"""One way to wrap the controllers of a driver: metrics time each call
(tidings.metrics.registry), fault injection fails some (storage/faulty.py).

``wrap_controllers(target, inner, around)`` gives ``target`` a proxy of
each controller of ``inner``: every interface method (``base.CONTROLLERS``)
is replaced by what ``around("controller.method", method)`` returns, and
any other attribute (a driver's extras) is the inner controller's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tidings.storage.base import CONTROLLERS, interface_methods

Method = Callable[..., Awaitable[Any]]
# (op, method) -> the method to call instead; op is "controller.method".
Around = Callable[[str, Method], Method]


class ControllerProxy:
    """The interface methods of ``inner`` through ``around``; anything else
    forwarded."""

    def __init__(self, name: str, inner: Any, around: Around) -> None:
        self._inner = inner
        for method in interface_methods(name):
            bound = getattr(inner, method, None)
            if bound is not None:
                setattr(self, method, around(f"{name}.{method}", bound))

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)


def wrap_controllers(target: Any, inner: Any, around: Around) -> None:
    """Set on ``target`` a proxy of each controller ``inner`` has (``target``
    may be ``inner`` itself: the controllers are then wrapped in place)."""
    for name in CONTROLLERS:
        controller = getattr(inner, name, None)
        if controller is not None:
            setattr(target, name, ControllerProxy(name, controller, around))
