"""Real services and stand-ins started for the tests, the benchmark (bench/) and the chaos harness:
Azurite, MySQL, ZooKeeper (services), demo instances as processes (processes, clusters,
raft_cluster, zk_ensemble), the weather APIs' local stand-ins (fake_openweather, fake_open_meteo),
a TCP proxy to put faults on the wire and what reads its traffic (tcpproxy, httpwatch, counting);
and the tools built on them: the chaos harness (chaos/, ``make chaos``) and raft_measure.

Imported as ``harness.<module>`` with the repository's root on the path (pytest's pythonpath, and
``PYTHONPATH=src:.`` for ``make bench`` and ``make chaos``). Not part of the wheel: src/ holds the
library and the demo; tests/support keeps what only the tests use."""
