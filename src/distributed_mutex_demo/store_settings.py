"""Where the demo keeps its readings: MySQL when MYSQL_HOST is set, PostgreSQL with
POSTGRES_STORE=true, otherwise SQLite at SQLITE_PATH; never a silent mix of them."""

from __future__ import annotations

from dataclasses import dataclass

from distributed_mutex_demo.parsers import any_text, database_name, text_of_length, whole_number_in
from distributed_mutex_demo.postgres_settings import read_postgres_store
from distributed_mutex_demo.settings_sources import Getter
from DistributedMutex.errors import ConfigurationError

# The settings of the MySQL store other than MYSQL_HOST, which alone chooses MySQL over SQLite.
_MYSQL_DETAILS = ("MYSQL_PORT", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE")


@dataclass(frozen=True)
class MySQLSettings:
    host: str
    port: int
    user: str
    password: str
    database: str


def read_store(get: Getter) -> tuple[MySQLSettings | None, str]:
    """MySQL when MYSQL_HOST is set, otherwise SQLite at SQLITE_PATH; never a silent mix of both."""
    host = get.optional("MYSQL_HOST", text_of_length(1, 255))
    mysql = MySQLSettings(
        host=host or "",
        port=get("MYSQL_PORT", whole_number_in(1, 65535, "(a TCP port)")),
        user=get("MYSQL_USER", text_of_length(1, 80)),
        password=get("MYSQL_PASSWORD", any_text),
        database=get("MYSQL_DATABASE", database_name),
    )
    sqlite_path = get("SQLITE_PATH", text_of_length(1, 4096))
    if host is not None:
        if get.is_set("SQLITE_PATH"):
            raise ConfigurationError(
                "SQLITE_PATH", "cannot be used together with MYSQL_HOST: set MYSQL_HOST to store the "
                "readings in MySQL, or SQLITE_PATH to store them in a local SQLite file, not both")
        return mysql, sqlite_path
    # Before MYSQL_HOST had no default, a user could set only the password: that user means MySQL,
    # and would otherwise find the readings going to a file without a word.
    stray = next((name for name in _MYSQL_DETAILS if get.is_set(name)), None)
    if stray:
        raise ConfigurationError(
            stray, "is set but MYSQL_HOST is not: set MYSQL_HOST (e.g. 127.0.0.1) to store the readings "
            "in MySQL, or leave the MYSQL_* settings unset to store them in SQLite at SQLITE_PATH")
    return None, sqlite_path


def read_postgres_store_choice(get: Getter, mysql: MySQLSettings | None) -> str | None:
    """POSTGRES_URL when POSTGRES_STORE=true; never together with MYSQL_HOST or SQLITE_PATH."""
    url = read_postgres_store(get)
    if url is not None:
        other = "MYSQL_HOST" if mysql is not None else "SQLITE_PATH" if get.is_set("SQLITE_PATH") else None
        if other:
            raise ConfigurationError(
                other, "cannot be used together with POSTGRES_STORE=true: store the readings in one database "
                "(PostgreSQL at POSTGRES_URL, MySQL at MYSQL_HOST, or SQLite at SQLITE_PATH)")
    return url
