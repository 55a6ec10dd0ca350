"""`--status` when nobody leads, on ZooKeeper and Raft: one JSON line and exit 3, or one error line
and exit 1 when nothing answers; every exit code on the blob lease. (With a leader:
tests/test_conformance.py, for every backend.)"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path

from harness.processes import SCRIPT, Instance
from harness.services import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, ZooKeeperServer, free_port, rebindable_port


def status(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--status"], cwd=cwd, capture_output=True, text=True,
                          env={**Instance.clean_environment(), **env}, timeout=30)


def test_zookeeper_without_contenders_says_nobody_leads(zookeeper_server: ZooKeeperServer, tmp_path: Path) -> None:
    done = status({"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_HOSTS": zookeeper_server.hosts,
                   "ZOOKEEPER_PATH": f"/nobody-{uuid.uuid4().hex[:8]}"}, tmp_path)
    assert done.returncode == 3, done.stderr
    line = json.loads(done.stdout)
    assert (line["backend"], line["leader_id"], line["leader_pid"], line["term"]) == ("zookeeper", None, None, 0)


def test_raft_needs_no_raft_id_to_ask_and_says_when_no_peer_answers(tmp_path: Path) -> None:
    peers = ",".join(f"{name}=127.0.0.1:{rebindable_port()}" for name in "abc")
    done = status({"ELECTION_BACKEND": "raft", "RAFT_PEERS": peers}, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("error: cannot read who leads: no Raft peer answered"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_raft_without_a_majority_says_nobody_leads(tmp_path: Path) -> None:
    """One peer of three runs: it answers, but it cannot be elected without a majority."""
    peers = ",".join(f"{name}=127.0.0.1:{rebindable_port()}" for name in "abc")
    env = {"ELECTION_BACKEND": "raft", "RAFT_PEERS": peers, "RAFT_DATA_DIR": str(tmp_path / "raft"),
           "SQLITE_PATH": str(tmp_path / "weather.sqlite3"), "WEATHER_PROVIDER": "open-meteo",
           "OPEN_METEO_GEOCODING_URL": "http://127.0.0.1:9/", "OPEN_METEO_FORECAST_URL": "http://127.0.0.1:9/"}
    alone = Instance("a", {**env, "RAFT_ID": "a"}, tmp_path)
    try:
        alone.wait_for(r"raft: peer a listening", timeout=15)
        done = status(env, tmp_path)
    finally:
        alone.stop()
    assert done.returncode == 3, done.stdout + done.stderr
    line = json.loads(done.stdout)
    assert (line["backend"], line["leader_id"], line["leader_pid"]) == ("raft", None, None)


# -- every exit code, on the blob lease (README, docs/bad-input.md, cli.py's docstring) ------------

def test_every_status_exit_code_on_the_blob_lease(spawn, azurite: Azurite, container_name: str,
                                                   tmp_path: Path) -> None:
    """0 a leader, 3 nobody leads (nobody ever did, here), 1 the storage cannot be reached,
    2 a bad setting or storage refusing the credentials; one line each, never a traceback."""
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string, "CONTAINER_NAME": container_name}
    nobody = status(env, tmp_path)
    assert nobody.returncode == 3, nobody.stdout + nobody.stderr
    assert json.loads(nobody.stdout)["leader_id"] is None

    leader = spawn("leads", {**env, "ACQUIRE_INTERVAL": "0.5", "WEATHER_SIMULATION": "always",
                             "WEATHER_CITIES": "Hanoi"})
    leader.wait_for(r"became leader \(term 1\)", timeout=15)
    found = status(env, tmp_path)
    assert found.returncode == 0, found.stdout + found.stderr
    assert (json.loads(found.stdout)["leader_id"], json.loads(found.stdout)["term"]) == ("leads", 1)

    closed = f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};" \
             f"BlobEndpoint=http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT};"
    unreachable = status({**env, "AZURE_STORAGE_CONNECTION_STRING": closed}, tmp_path)
    assert unreachable.returncode == 1, unreachable.stdout + unreachable.stderr
    assert unreachable.stderr.startswith("error: cannot read who leads: "), unreachable.stderr

    wrong_key = azurite.connection_string.replace(AZURITE_KEY, base64.b64encode(b"not the key" * 6).decode())
    refused = status({**env, "AZURE_STORAGE_CONNECTION_STRING": wrong_key}, tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith("error: "), refused.stderr

    bad_setting = status({**env, "LEASE_DURATION": "5"}, tmp_path)
    assert bad_setting.returncode == 2, bad_setting.stdout + bad_setting.stderr
    assert bad_setting.stderr.startswith("configuration error: LEASE_DURATION: "), bad_setting.stderr

    for done in (nobody, found, unreachable, refused, bad_setting):
        assert len(done.stdout.splitlines()) + len(done.stderr.splitlines()) == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
