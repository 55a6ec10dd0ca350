"""Where the readings are kept: MySQL when MYSQL_HOST is set, PostgreSQL when POSTGRES_STORE=true,
otherwise a local SQLite file.

    base.py      the Store interface, a stored reading, the fencing rule
    mysql.py     WeatherStore, on MySQL or MariaDB
    postgres.py  PostgresStore, on PostgreSQL (its writes also fenced by the lease row when the
                 election runs in the same database)
    sqlite.py  SQLiteStore, one local file shared by the instances of one machine
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distributed_mutex_demo.stores.base import (
    OneConnection,
    Store,
    StoredReading,
    check_may_register,
    check_may_write,
)

if TYPE_CHECKING:
    from distributed_mutex_demo.config import Settings

__all__ = ["OneConnection", "Store", "StoredReading", "check_may_register", "check_may_write", "open_store"]


def open_store(settings: Settings) -> Store:
    """MySQL when MYSQL_HOST is set, PostgreSQL when POSTGRES_STORE=true, otherwise the SQLite file
    SQLITE_PATH. Nothing is opened yet.

    Each store's driver is imported only when it is chosen."""
    if settings.postgres_store_url is not None:
        from distributed_mutex_demo.stores.postgres import PostgresStore

        pg = settings.postgres
        # The election's row is in the same database: every write checks it first.
        lease = (pg.table, pg.election) if pg is not None and pg.url == settings.postgres_store_url else None
        return PostgresStore(settings.postgres_store_url, lease=lease)
    if settings.mysql is not None:
        from distributed_mutex_demo.stores.mysql import WeatherStore

        return WeatherStore(settings.mysql)
    from distributed_mutex_demo.stores.sqlite import SQLiteStore

    return SQLiteStore(settings.sqlite_path)
