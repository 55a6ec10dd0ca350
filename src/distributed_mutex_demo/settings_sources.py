"""Where the settings come from: the environment, a .env file, constant.py, or the defaults.

Precedence: environment > .env > constant.py > default. ``.env`` and ``constant.py`` are read from
the given directory (the program's: run the demo from the project's root). Only the names in
``known`` (config.DEFAULTS) are taken from any of them.
"""

from __future__ import annotations

import runpy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values

from DistributedMutex.errors import ConfigurationError

T = TypeVar("T")


def merge_sources(environ: Mapping[str, str], directory: Path,
                  known: Mapping[str, str | None]) -> tuple[dict[str, str], list[str]]:
    """The settings given (name -> text) and the sources that gave any, in order of precedence."""
    merged: dict[str, str] = {}
    used: list[str] = []
    constant_file = directory / "constant.py"
    if constant_file.is_file():
        merged.update(_read_constant_py(constant_file, known))
        used.append("constant.py")
    env_file = directory / ".env"
    if env_file.is_file():
        values = {k: v for k, v in dotenv_values(env_file).items() if k in known and v is not None}
        merged.update(values)
        used.append(".env")
    from_environment = {k: v for k, v in environ.items() if k in known}
    if from_environment:
        used.append("environment")
    merged.update(from_environment)
    return merged, used


def _read_constant_py(path: Path, known: Mapping[str, str | None]) -> dict[str, str]:
    try:
        namespace = runpy.run_path(str(path))
    except SyntaxError as exc:
        raise ConfigurationError("constant.py", f"cannot be read: syntax error on line {exc.lineno}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the user's file is a config error
        raise ConfigurationError("constant.py", f"cannot be read: {type(exc).__name__}") from None
    values: dict[str, str] = {}
    for name in known:
        if name not in namespace:
            continue
        value = namespace[name]
        if isinstance(value, (list, tuple)):
            value = ",".join(str(item) for item in value)
        values[name] = "" if value is None else str(value)
    return values


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
            value = self._defaults[name] if default is self._UNSET else default
            if value is None:
                return None  # type: ignore[return-value]
        return parse(name, value)

    def optional(self, name: str, parse: Callable[[str, str], T]) -> T | None:
        """A setting whose default is unset (such as MYSQL_HOST): None when it is not given."""
        return self(name, parse)
