"""One way to wrap the controllers of a driver: metrics time each call
(tidings.metrics.registry), fault injection fails some (storage/faulty.py),
and the pooled driver sends each to the driver of the queue's pool
(storage/pooling/controllers.py).

``wrap_controllers(target, inner, around)`` gives ``target`` a proxy of
each controller of ``inner``: every interface method (``base.CONTROLLERS``)
is replaced by what ``around("controller.method", method)`` returns, and
any other attribute (a driver's extras) is the inner controller's own.

``route_controllers(target, parts, driver_for)`` gives ``target`` a proxy
of each controller in ``parts``: an interface method the part defines is
the part's own; any other goes, with the same arguments, to the same
method of the driver that ``driver_for(op, project, queue)`` picks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tidings.storage.base import CONTROLLERS, interface_methods

Method = Callable[..., Awaitable[Any]]
# (op, method) -> the method to call instead; op is "controller.method".
Around = Callable[[str, Method], Method]
# (op, project, queue) -> the driver that answers the call.
DriverFor = Callable[[str, str, str], Awaitable[Any]]


class ControllerProxy:
    """The interface methods of ``inner`` through ``around``, those it lacks
    from ``missing`` when given; anything else forwarded."""

    def __init__(self, name: str, inner: Any, around: Around,
                 missing: Callable[[str], Method] | None = None) -> None:
        self._inner = inner
        for method in interface_methods(name):
            op = f"{name}.{method}"
            bound = getattr(inner, method, None)
            if bound is not None:
                setattr(self, method, around(op, bound))
            elif missing is not None:
                setattr(self, method, missing(op))

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)


def wrap_controllers(target: Any, inner: Any, around: Around) -> None:
    """Set on ``target`` a proxy of each controller ``inner`` has (``target``
    may be ``inner`` itself: the controllers are then wrapped in place)."""
    for name in CONTROLLERS:
        controller = getattr(inner, name, None)
        if controller is not None:
            setattr(target, name, ControllerProxy(name, controller, around))


def route_controllers(target: Any, parts: Mapping[str, Any], driver_for: DriverFor) -> None:
    """Set on ``target`` a proxy of each of ``parts`` (by controller name)
    whose missing interface methods are forwarded to ``driver_for``'s pick."""

    def forward(op: str) -> Method:
        name, method = op.split(".")

        async def forwarded(project: str, queue: str, *args: Any, **kwargs: Any) -> Any:
            driver = await driver_for(op, project, queue)
            return await getattr(getattr(driver, name), method)(project, queue, *args, **kwargs)

        forwarded.__name__ = method
        return forwarded

    for name, part in parts.items():
        setattr(target, name, ControllerProxy(name, part, _as_is, forward))


def _as_is(op: str, method: Method) -> Method:
    return method
