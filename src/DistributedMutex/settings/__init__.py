"""Election settings by name (ELECTION_BACKEND, ZOOKEEPER_HOSTS, RAFT_PEERS, ...): read, checked
with one-line errors naming the setting, and turned into a backend (election.py). Used by
``distributed-mutex run`` and by the weather demo; nothing here imports a third-party package
until a backend is built."""
