"""Least privilege, on real Azurite and MariaDB: a container SAS with read and write is enough for the
lease, and a MySQL user with SELECT, INSERT and UPDATE on its database is enough for the store.
What happens with less is in tests/test_bad_input.py (docs/bad-input.md)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from distributed_mutex_demo.config import MySQLSettings, load_settings
from distributed_mutex_demo.stores.mysql import WeatherStore
from distributed_mutex_demo.weather import Reading
from DistributedMutex.backend import Held, Identity, Lease
from DistributedMutex.backends.azure.lease import AzureBlobLeaseBackend
from DistributedMutex.errors import ConfigurationError, StorageRejectedError
from harness.processes import ROOT

# -- container SAS ---------------------------------------------------------------------------------


def sas_backend(url: str) -> AzureBlobLeaseBackend:
    return AzureBlobLeaseBackend.from_container_sas_url(url, "weather-leader")


def full_round(backend: AzureBlobLeaseBackend) -> None:
    """Everything the election does: check, create the blob, acquire, renew, term, release, read."""
    backend.check_access()
    lease = backend.acquire(Identity("sas-user"), now=0.0)
    assert isinstance(lease, Lease) and lease.term == 1
    backend.renew(lease, now=1.0)
    assert backend.advance_term(lease, Identity("sas-user"), at_least=5).term == 5
    backend.release(lease)
    record = backend.read_leader()
    assert record is not None and record.instance_id == "sas-user" and record.term == 5 and not record.is_held


# Measured on Azurite 3.37 (and as Azure documents it): read for the blob's properties, write for
# creating the blob, every lease call and the metadata; create adds nothing that write does not give.
@pytest.mark.parametrize(("permission", "enough"), [
    ("rw", True), ("rcw", True), ("racwdl", True), ("r", False), ("w", False), ("rc", False), ("cw", False),
])
def test_read_and_write_are_the_permissions_the_lease_needs(container_sas, permission: str, enough: bool) -> None:
    backend = sas_backend(container_sas(permission))
    if enough:
        full_round(backend)
    else:
        with pytest.raises(StorageRejectedError, match=r"lacks the (read \(r\)|write \(w\)) permission"):
            full_round(backend)


def test_a_read_only_sas_is_found_out_while_another_instance_leads(azurite, container_sas, container_name) -> None:
    leader = AzureBlobLeaseBackend(azurite.connection_string, container_name, "weather-leader")
    assert isinstance(leader.acquire(Identity("leader"), now=0.0), Lease)
    reader = sas_backend(container_sas("r"))
    assert isinstance(reader.acquire(Identity("reader"), now=0.0), Held)  # reading alone looks fine...
    with pytest.raises(StorageRejectedError, match=r"lacks the write \(w\) permission to write the lease blob"):
        reader.check_access()  # ...so the start checks a write too


def test_the_container_comes_from_the_sas_url(tmp_path: Path) -> None:
    url = "https://acct.blob.core.windows.net/from-the-url?sv=2026-06-06&sr=c&sp=rw&sig=abcd%2Bef"
    settings = load_settings({"AZURE_STORAGE_CONTAINER_SAS_URL": url}, tmp_path)
    assert settings.container_name == "from-the-url"
    assert settings.storage_auth == "AZURE_STORAGE_CONTAINER_SAS_URL"
    assert {url, "sv=2026-06-06&sr=c&sp=rw&sig=abcd%2Bef", "abcd+ef", "abcd%2Bef"} <= set(settings.secrets())
    same = load_settings({"AZURE_STORAGE_CONTAINER_SAS_URL": url, "CONTAINER_NAME": "from-the-url"}, tmp_path)
    assert same.container_name == "from-the-url"


def test_an_instance_leads_with_a_container_sas_url(spawn, demo_env, container_sas, mysql_server, database) -> None:
    # CONTAINER_NAME stays: it names the SAS URL's container (and the shell may set it otherwise).
    env = {k: v for k, v in demo_env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    env["AZURE_STORAGE_CONTAINER_SAS_URL"] = container_sas("rw")
    leader = spawn("sas-leader", env)
    leader.wait_for(r"became leader \(term 1\)", timeout=15)
    leader.wait_for(r"stored \d+ readings", timeout=10)
    assert {row[0] for row in mysql_server.query(database, "SELECT DISTINCT leader_id FROM weather")} == {"sas-leader"}
    status = spawn("status", env, "--status")
    assert status.wait(15) == 0, status.tail()
    assert json.loads(status.lines[-1].text)["leader_id"] == "sas-leader"
    assert "Traceback" not in leader.output + status.output


# -- MySQL -----------------------------------------------------------------------------------------

def settings_for(mysql_server, database: str, user: dict[str, str]) -> MySQLSettings:
    return MySQLSettings(mysql_server.host, mysql_server.port, user["MYSQL_USER"], user["MYSQL_PASSWORD"], database)


def test_with_create_the_store_makes_its_database_and_tables(mysql_server, database, mysql_user) -> None:
    store = WeatherStore(settings_for(mysql_server, database, mysql_user("SELECT, INSERT, UPDATE, CREATE")))
    store.check_access()
    store.register_term(1, "a")
    from datetime import datetime, timezone
    assert store.write([Reading("Hanoi", 25.0, 80, "clear sky", datetime(2026, 11, 26, tzinfo=timezone.utc))],
                       1, "a") == 1
    assert [r.city for r in store.latest()] == ["Hanoi"]
    store.close()


def test_the_demo_runs_as_a_user_with_only_select_insert_update(spawn, demo_env, mysql_server, database,
                                                                 mysql_user) -> None:
    admin = WeatherStore(MySQLSettings(mysql_server.host, mysql_server.port, mysql_server.user,
                                       mysql_server.password, database))
    admin.check_access()  # what an administrator's one-off setup does: database and tables
    admin.close()
    user = mysql_user("SELECT, INSERT, UPDATE")
    leader = spawn("least", dict(demo_env, **user))
    leader.wait_for(r"became leader", timeout=15)
    leader.wait_for(r"stored \d+ readings", timeout=10)
    worker = spawn("least-worker", dict(demo_env, **user))
    worker.wait_for(r"newest readings", timeout=10)
    assert mysql_server.query(database, "SELECT leader_id FROM leader_term") == [("least",)]
    for instance in (leader, worker):
        # (The test's 3 cities a second are over the free tier: that warning is expected.)
        assert not instance.find(r"(WARNING|ERROR) \[[^\]]+\] (?!\d+ cities every)"), instance.tail()


def test_a_hostile_database_name_never_reaches_the_server(mysql_server) -> None:
    victim = "dm_victim_db"
    with mysql_server.connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{victim}`")
    try:
        for hostile in (f"x`; DROP DATABASE `{victim}`; -- ", f"{victim}` ", "weather'; --", "mysql", " weather"):
            with pytest.raises(ConfigurationError, match="MYSQL_DATABASE: must"):
                WeatherStore(MySQLSettings(mysql_server.host, mysql_server.port, mysql_server.user,
                                           mysql_server.password, hostile))
        names = {row[0] for row in mysql_server.query("information_schema", "SELECT SCHEMA_NAME FROM SCHEMATA")}
        assert victim in names
    finally:
        mysql_server.drop_database(victim)


def test_every_statement_of_the_store_takes_its_values_as_parameters() -> None:
    """Static: the only text put into SQL is the validated database name and the fixed table names."""
    tree = ast.parse((ROOT / "src" / "distributed_mutex_demo" / "stores" / "mysql.py").read_text())
    allowed_fstring_parts = {"database", "s.database"}
    checked = 0
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "execute"):
            continue
        sql = node.args[0]
        checked += 1
        if isinstance(sql, ast.Constant):
            continue
        if isinstance(sql, ast.JoinedStr):
            parts = {ast.unparse(v.value) for v in sql.values if isinstance(v, ast.FormattedValue)}
            assert parts <= allowed_fstring_parts, f"line {node.lineno}: {ast.unparse(sql)}"
            continue
        # SCHEMA statements and the privilege probes (constants, formatted with constant table names).
        assert ast.unparse(sql) in ("statement", "statement.format(table=table)"), f"line {node.lineno}"
    assert checked >= 10
    assert re.search(r"check_database_name\(settings\.database\)", (ROOT / "src" / "distributed_mutex_demo" / "stores" / "mysql.py").read_text())


INIT_SCRIPT = ROOT / "docker" / "mysql-init" / "10-least-privileged-user.sh"
# The two helpers the mysql image's entrypoint gives the scripts it sources: the first as in the
# image (8.4), the second logging in as root to this test's server instead of the image's socket.
ENTRYPOINT_HELPERS = r"""
docker_sql_escape_string_literal() {
    local newline=$'\n'
    local escaped=${1//\\/\\\\}
    escaped="${escaped//$newline/\\n}"
    echo "${escaped//\'/\\\'}"
}
docker_process_sql() { mariadb --no-defaults --protocol=tcp -h"$DB_HOST" -P"$DB_PORT" -u"$DB_ROOT" "$@"; }
"""


@pytest.mark.skipif(shutil.which("mariadb") is None, reason="needs the mariadb client (installed with the server)")
def test_the_compose_init_script_makes_a_user_that_can_run_the_store(mysql_server, database) -> None:
    user, password = "dm_compose_app", "it's-a-Pw\\with quotes"
    mysql_server.drop_user(user)
    with mysql_server.connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        cursor.execute(f"CREATE DATABASE `{database}`")  # MYSQL_DATABASE: the image makes it first
    env = {"PATH": os.environ["PATH"], "MYSQL_APP_USER": user, "MYSQL_APP_PASSWORD": password,
           "MYSQL_DATABASE": database, "DB_HOST": mysql_server.host, "DB_PORT": str(mysql_server.port),
           "DB_ROOT": mysql_server.user}
    if mysql_server.password:
        env["MYSQL_PWD"] = mysql_server.password
    try:
        subprocess.run(["bash", "-euc", f"{ENTRYPOINT_HELPERS}\n. {INIT_SCRIPT}"], env=env, check=True,
                       capture_output=True, text=True, timeout=30)
        grants = [row[0] for row in mysql_server.query(database, f"SHOW GRANTS FOR '{user}'@'%'")]
        assert any(f"GRANT SELECT, INSERT, UPDATE, CREATE ON `{database}`.*" in g for g in grants), grants
        assert not any("ALL PRIVILEGES" in g or (" ON *.*" in g and "USAGE" not in g) for g in grants), grants
        store = WeatherStore(MySQLSettings(mysql_server.host, mysql_server.port, user, password, database))
        store.check_access()  # creates the tables, then tries every privilege
        store.close()
    finally:
        with mysql_server.connect() as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")


def test_the_compose_app_logs_in_as_that_user_never_as_root() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    app = compose[compose.index("\n  app:"):]
    assert re.search(r'MYSQL_USER: "\$\{MYSQL_APP_USER:-weather_app\}"', app), app
    assert "./docker/mysql-init:/docker-entrypoint-initdb.d" in compose
    assert not os.access(INIT_SCRIPT, os.X_OK), "sourced, not run: it needs the entrypoint's helpers"


def test_the_configuration_page_documents_the_new_settings() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    for name in ("AZURE_STORAGE_CONTAINER_SAS_URL", "AZURE_STORAGE_ACCOUNT_URL"):
        assert f"| `{name}` |" in page
    assert "## Security and access" in page
    assert Path(ROOT / "docs" / "bad-input.md").exists()
