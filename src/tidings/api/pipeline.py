"""The pipeline: configurable stages around the operations.

A stage is a plain Python class named in the settings as ``"module:Class"``
under Zaqar's setting names (``message_pipeline``, ``queue_pipeline``,
``claim_pipeline``, ``subscription_pipeline``, ``topic_pipeline``). It is
made once at start-up, without arguments, and may define any of these
async hooks:

- ``before_<operation>(self, ctx, **arguments)``: runs before the operation,
  in the order the stages are listed; raising a ``tidings.errors``
  exception (``ValidationFailed`` → 400, ``Forbidden`` → 403, ...) rejects
  the request and nothing is stored.
- ``after_<operation>(self, ctx, result, **arguments)``: runs after the
  operation succeeded, in the same order; its return value is ignored.

``arguments`` are the operation function's own parameters by name, as the
transport passed them, before validation (see docs/pipeline.md for the
table): a stage must not assume a well-formed document. Hooks should
accept ``**_`` so that new parameters do not break them.

A hook reaches the service as ``ctx.service``. Stages are not given it
when they are made: the service holds the pipeline and is frozen once
built (api/context.py), so the pipeline is made first.

The notifier is always the first stage of ``message``: after a post it
calls ``ctx.service.wake_notifier`` (the delivery worker running in this
process, if any), so deliveries leave at once instead of at the worker's
next wake-up.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from tidings.storage.common.outbox import take_post_wrote_deliveries

if TYPE_CHECKING:
    from tidings.api.context import Context
    from tidings.config import Settings

log = logging.getLogger(__name__)

# resource name -> the settings field listing its stages
SETTINGS_NAMES: dict[str, str] = {
    "message": "message_pipeline",
    "queue": "queue_pipeline",
    "claim": "claim_pipeline",
    "subscription": "subscription_pipeline",
    "topic": "topic_pipeline",
}


class Notifier:
    """Wakes this process's delivery worker after each message post."""

    async def after_post(self, ctx: Context, result: Any, **_: Any) -> None:
        wake = ctx.service.wake_notifier
        # A post its driver says wrote no delivery leaves nothing to lease.
        if take_post_wrote_deliveries() is False:
            return
        if wake is not None:
            try:
                wake()
            except Exception:  # a broken wake-up must not fail the post
                log.exception("the delivery worker's wake-up failed")


def names(value: Iterable[str] | str | None) -> list[str]:
    """A stage list from the settings: a list, or one comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [name.strip() for name in value if name and name.strip()]


def load_stage(spec: str) -> Any:
    """Import ``module:Class`` (or ``module.Class``) and make the stage."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"invalid pipeline stage {spec!r}: use module:Class")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"invalid pipeline stage {spec!r}: {exc}") from None
    if not inspect.isclass(target):
        return target  # an already made stage object
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):  # a class without a readable signature
        parameters = []
    required = [p.name for p in parameters
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if required:
        # Stages made with the service (an argument until the service was
        # frozen) would otherwise fail with a TypeError from deep inside.
        raise ValueError(f"invalid pipeline stage {spec!r}: a stage is made without "
                         f"arguments, but it requires {', '.join(required)}; a hook "
                         "reaches the service as ctx.service")
    return target()


class Pipeline:
    """The stages of each resource, and the hooks found on them."""

    def __init__(self, stages: Mapping[str, list[Any]] | None = None) -> None:
        self.stages: dict[str, list[Any]] = {k: list(v) for k, v in (stages or {}).items()}
        self._hooks: dict[tuple[str, str], list[Callable[..., Awaitable[Any]]]] = {}
        self._wanted: dict[tuple[str, str], bool] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipeline:
        """The configured stages, the notifier first on ``message``.
        Raises ValueError for a stage that cannot be loaded."""
        stages: dict[str, list[Any]] = {}
        for resource, setting in SETTINGS_NAMES.items():
            specs = names(getattr(settings, setting))
            stages[resource] = [load_stage(spec) for spec in specs]
        stages["message"].insert(0, Notifier())
        return cls(stages)

    def wants(self, resource: str, operation: str) -> bool:
        """Whether any stage hooks this operation (cached)."""
        key = (resource, operation)
        wanted = self._wanted.get(key)
        if wanted is None:
            wanted = bool(self.hooks(resource, "before_" + operation)
                          or self.hooks(resource, "after_" + operation))
            self._wanted[key] = wanted
        return wanted

    def hooks(self, resource: str, name: str) -> list[Callable[..., Awaitable[Any]]]:
        key = (resource, name)
        found = self._hooks.get(key)
        if found is None:
            found = [getattr(stage, name) for stage in self.stages.get(resource, ())
                     if callable(getattr(stage, name, None))]
            self._hooks[key] = found
        return found

    async def before(self, resource: str, operation: str, ctx: Context,
                     arguments: dict[str, Any]) -> None:
        for hook in self.hooks(resource, "before_" + operation):
            await hook(ctx, **arguments)

    async def after(self, resource: str, operation: str, ctx: Context, result: Any,
                    arguments: dict[str, Any]) -> None:
        for hook in self.hooks(resource, "after_" + operation):
            await hook(ctx, result, **arguments)


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def stage(resource: str, operation: str) -> Callable[[F], F]:
    """Run the pipeline of ``resource`` around an operation function whose
    first parameter is the context. Costs one dictionary look-up when no
    stage hooks the operation."""

    def wrap(fn: F) -> F:
        parameters = list(inspect.signature(fn).parameters.values())[1:]  # not the context
        positional = [p.name for p in parameters]
        defaults = {p.name: p.default for p in parameters if p.default is not p.empty}

        @functools.wraps(fn)
        async def run(ctx: Context, *args: Any, **kwargs: Any) -> Any:
            pipeline = ctx.service.pipeline
            if pipeline is None or not pipeline.wants(resource, operation):
                return await fn(ctx, *args, **kwargs)
            arguments = dict(defaults)
            arguments.update(zip(positional, args, strict=False))
            arguments.update(kwargs)
            await pipeline.before(resource, operation, ctx, arguments)
            result = await fn(ctx, *args, **kwargs)
            await pipeline.after(resource, operation, ctx, result, arguments)
            return result

        return run  # type: ignore[return-value]  # run has the signature of the function it wraps

    return wrap
