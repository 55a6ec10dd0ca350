"""``Getter``: one setting's value, parsed, from the settings given or a default.

Where the settings come from is the caller's business (the demo merges the environment, ``.env`` and
``constant.py``; ``distributed-mutex run`` the environment and its flags): this module only reads a
mapping of names to text, so that the backends' settings are read the same way by both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class Getter:
    """``get(name, parse)``: a setting's value, parsed (``parse(name, text)`` raises
    ConfigurationError naming the setting); the default when no source gives it."""

    def __init__(self, raw: Mapping[str, str], defaults: Mapping[str, str | None]) -> None:
        self._raw = raw
        self._defaults = defaults

    _UNSET = object()

    def is_set(self, name: str) -> bool:
        """Given by a source (even if empty), not just the default."""
        return name in self._raw

    def __call__(self, name: str, parse: Callable[[str, str], T], default: Any = _UNSET) -> T:
        value = self._raw.get(name)
        if value is None:
            value = self._defaults.get(name) if default is self._UNSET else default
            if value is None:
                return None  # type: ignore[return-value]
        return parse(name, value)

    def optional(self, name: str, parse: Callable[[str, str], T]) -> T | None:
        """A setting whose default is unset (such as MYSQL_HOST): None when it is not given."""
        return self(name, parse)
