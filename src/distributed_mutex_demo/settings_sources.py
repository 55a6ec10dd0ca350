"""Where the settings come from: the environment, a .env file, constant.py, or the defaults.

Precedence: environment > .env > constant.py > default. ``.env`` and ``constant.py`` are read from
the given directory (the program's: run the demo from the project's root). Only the names in
``known`` (config.DEFAULTS) are taken from any of them.
"""

from __future__ import annotations

import runpy
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from DistributedMutex.errors import ConfigurationError
from DistributedMutex.settings.getter import Getter

__all__ = ["Getter", "merge_sources"]


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
