"""In a venv that holds only the wheel: what ``import DistributedMutex`` loads, and what each part
whose extra is missing says. Prints one JSON object."""

from __future__ import annotations

import functools
import importlib
import importlib.resources
import json
import sys
import tempfile
from collections.abc import Callable

before = set(sys.modules)
import DistributedMutex  # noqa: E402
from DistributedMutex.backends.raft import make_certificates  # noqa: E402

loaded = {name.split(".")[0] for name in set(sys.modules) - before}
refusals: dict[str, dict[str, object]] = {}


def refusal(what: str, attempt: Callable[[], object]) -> None:
    try:
        attempt()
    except DistributedMutex.MissingExtraError as exc:
        refusals[what] = {"message": str(exc), "extra": exc.extra,
                          "configuration_error": isinstance(exc, DistributedMutex.ConfigurationError)}
    else:
        refusals[what] = {"message": None}


refusal("ZooKeeperBackend", lambda: DistributedMutex.ZooKeeperBackend("127.0.0.1:2181"))
refusal("PostgresLeaseBackend", lambda: DistributedMutex.PostgresLeaseBackend("postgresql://127.0.0.1/db"))
refusal("RedisLeaseBackend", lambda: DistributedMutex.RedisLeaseBackend("redis://127.0.0.1:6379/0"))
refusal("AzureBlobLeaseBackend", lambda: DistributedMutex.AzureBlobLeaseBackend("UseDevelopmentStorage=true",
                                                                                  "container", "blob"))
refusal("AzureBlobLeaseBackend.from_container_sas_url",
        lambda: DistributedMutex.AzureBlobLeaseBackend.from_container_sas_url("https://a/c?sig=x", "blob"))
refusal("DistributedMutex.metrics", lambda: importlib.import_module("DistributedMutex.metrics"))
refusal("make_certificates", lambda: make_certificates(tempfile.mkdtemp(), ["a"]))
for integration in ("DistributedMutex.integrations.apscheduler", "DistributedMutex.integrations.celery"):
    refusal(integration, functools.partial(importlib.import_module, integration))

print(json.dumps({
    "file": DistributedMutex.__file__,
    # Top-level modules that `import DistributedMutex` brought in and that are not the standard library's.
    "not_stdlib": sorted(loaded - set(sys.stdlib_module_names) - {"DistributedMutex"}),
    "py_typed": importlib.resources.files("DistributedMutex").joinpath("py.typed").is_file(),
    "refusals": refusals,
}))
