"""``make demo``'s parts (distributed_mutex_demo/demo.py is its entry point):

    state.py     the demo's one source of truth: instances, leaderships, actions, refused writes
    services.py  the election's service: Azurite or a ZooKeeper server (a Raft cluster needs none)
    cluster.py   the instances, the schedule, and what the demo does to them (kill, stop, pause, cut off, add)
    faults.py    the pause timed on a write, and the cuts through the harness's TCP proxies
    readers.py   what the demo reads from the instances' output and journal; the summary
    panel.py     the terminal's live panel (Rich) and keys
    web.py       the web page (Starlette on uvicorn, server-sent events) and static/ its HTML, CSS, JS
"""
