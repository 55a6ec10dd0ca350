"""A user's first line with ZooKeeperBackend, in a venv without kazoo: the traceback it ends with."""

from DistributedMutex import DistributedMutex, ZooKeeperBackend

DistributedMutex(print, backend=ZooKeeperBackend("127.0.0.1:2181"))
