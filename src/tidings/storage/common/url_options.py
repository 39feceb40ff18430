"""The query options of a storage URL, read as typed values.

Every driver's ``from_url`` takes its own options out of the query with
``UrlOptions`` (so a bad value is refused with the same words whichever
the backend) and passes what is left to its client library.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


class UrlOptions:
    """The options of ``query``; each ``take_*`` removes the one it reads."""

    def __init__(self, query: str, backend: str) -> None:
        self.backend = backend
        self._pairs = parse_qsl(query, keep_blank_values=True)

    def _take(self, name: str) -> str | None:
        """The last value given for ``name`` (as a dict of the query would
        keep), removing every one."""
        values = [v for k, v in self._pairs if k == name]
        if not values:
            return None
        self._pairs = [(k, v) for k, v in self._pairs if k != name]
        return values[-1]

    def _refuse(self, name: str, what: str, text: str) -> ValueError:
        return ValueError(f"the {self.backend} URL option {name} must be {what}, not {text!r}")

    def take_text(self, name: str, default: str) -> str:
        text = self._take(name)
        return default if text is None else text

    def take_flag(self, name: str, default: bool) -> bool:
        text = self._take(name)
        if text is None:
            return default
        lowered = text.strip().lower()
        if lowered in TRUE:
            return True
        if lowered in FALSE:
            return False
        raise self._refuse(name, "true or false", text)

    def take_seconds(self, name: str, default: float) -> float:
        """A positive number of seconds."""
        text = self._take(name)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise self._refuse(name, "a number of seconds", text) from None
        if not value > 0:
            raise self._refuse(name, "positive", text)
        return value

    def take_count(self, name: str, default: int) -> int:
        """A whole number, zero or more."""
        text = self._take(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise self._refuse(name, "a whole number", text) from None
        if value < 0:
            raise self._refuse(name, "zero or more", text)
        return value

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self._pairs)

    def rest(self) -> list[tuple[str, str]]:
        """The options no ``take_*`` read, in their order: the client
        library's."""
        return list(self._pairs)
