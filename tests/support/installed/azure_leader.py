"""With the wheel and its ``[azure]`` extra: elect a leader on a blob with the default timing, see
its task run, stop. Prints one JSON object.

    azure_leader.py CONNECTION_STRING CONTAINER
"""

from __future__ import annotations

import json
import logging
import sys

import DistributedMutex

connection_string, container = sys.argv[1:]
# The backends are imported on first use, even with their extra installed.
azure_at_import = sorted(name for name in sys.modules if name.split(".")[0] == "azure")
led: dict[str, object] = {}


def lead(ctx: DistributedMutex.RoleContext) -> None:
    led.update(term=ctx.term, instance_id=ctx.instance_id, active=ctx.is_active())
    mutex.stop()


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
mutex = DistributedMutex.DistributedMutex(lead, backend=DistributedMutex.AzureBlobLeaseBackend(connection_string, container, "leader"))
mutex.run()
print(json.dumps({"azure_at_import": azure_at_import, "led": led}))
