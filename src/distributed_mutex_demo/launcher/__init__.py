"""``make demo``'s parts (distributed_mutex_demo/demo.py is its entry point):

    services.py  the election's service: Azurite or a ZooKeeper server (a Raft cluster needs none)
    cluster.py   the instances, their leadership journal, and the failovers the demo causes
    panel.py     what the terminal shows: the live panel, the prefixed log lines, keys, the summary
"""
