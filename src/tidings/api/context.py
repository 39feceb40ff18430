"""Who is asking, and the service they are asking: built once per request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tidings import errors
from tidings.config import Limits
from tidings.storage.base import DataDriver


@dataclass(slots=True)
class Service:
    """Everything an operation needs besides the request itself."""

    storage: DataDriver
    limits: Limits


@dataclass(slots=True)
class Context:
    service: Service
    project: str
    client_id: str | None = None

    @property
    def storage(self) -> DataDriver:
        return self.service.storage

    @property
    def limits(self) -> Limits:
        return self.service.limits

    def require_client_id(self) -> str:
        if self.client_id is None:
            raise errors.MissingHeader("The header Client-ID was missing.")
        return self.client_id


def check_client_id(value: str | None) -> str:
    """Client-ID must be present and a UUID, as Zaqar requires."""
    if value is None:
        raise errors.MissingHeader("The header Client-ID was missing.")
    try:
        uuid.UUID(value)
    except ValueError:
        raise errors.InvalidUUID(f"Malformed hexadecimal UUID: {value!r}") from None
    return value


def check_project(value: str | None, limits: Limits) -> str:
    if value is None:
        raise errors.ProjectMissing("The header X-Project-ID was missing.")
    if not value.strip():
        raise errors.ProjectEmpty("X-Project-ID cannot be an empty string.")
    if len(value) > limits.max_project_id_length:
        raise errors.InvalidQueueName(
            f"Project ids may not be more than {limits.max_project_id_length} characters long."
        )
    return value


def make_context(service: Service, project: str | None, client_id: str | None) -> Context:
    """Check the identifying headers of a request (noauth: the project comes
    from X-Project-ID) and build its context."""
    client_id = check_client_id(client_id)
    project = check_project(project, service.limits)
    return Context(service=service, project=project, client_id=client_id)
