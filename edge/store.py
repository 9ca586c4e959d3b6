"""Rows in and out of the one schema.

The tables are declared once, in ``edge.models``; the migrations build exactly that schema
(``tests/test_store.py`` compares them). Every row the runtime inserts goes through
``insert``, which builds its statement from the model's own columns: a key the table does
not have fails at once with the table and the key named, not deep inside SQLite. Column
lists for reads come from ``select_list`` the same way. (The rest of the static SQL in
``edge/`` is prepared against the migrated schema by a test, so a misspelt column there
fails the build, not a swipe.)
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Mapping
from functools import cache
from typing import Any

from sqlmodel import SQLModel

# Row ids need to be unique across nodes, not secret: 128 bits from a generator seeded once
# from the OS. uuid4 asks the kernel on every call, and on the swipe path that system call
# hands the interpreter lock to the MQTT thread and waits to get it back.
_ids = random.Random()


def new_id() -> str:
    """A fresh 32-hex-digit id for an event or an alarm."""
    return f"{_ids.getrandbits(128):032x}"


@cache
def columns(table: type[SQLModel]) -> frozenset[str]:
    return frozenset(table.__table__.columns.keys())  # type: ignore[attr-defined]


def _checked(table: type[SQLModel], names: tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in columns(table)]
    if unknown:
        raise ValueError(f"{table.__tablename__} has no column {', '.join(unknown)}")


@cache
def _insert_sql(table: type[SQLModel], names: tuple[str, ...]) -> str:
    _checked(table, names)
    marks = ",".join("?" * len(names))
    return f"INSERT INTO {table.__tablename__} ({', '.join(names)}) VALUES ({marks})"


def insert(conn: sqlite3.Connection, table: type[SQLModel], row: Mapping[str, Any]) -> int:
    """Insert one row (column → value); its rowid. Built once per set of columns: the swipe
    path pays a dictionary lookup, not a string build."""
    cur = conn.execute(_insert_sql(table, tuple(row)), tuple(row.values()))
    return cur.lastrowid or 0


@cache
def select_list(table: type[SQLModel], *names: str) -> str:
    """``"a, b, c"`` for a SELECT, each checked against the table."""
    _checked(table, names)
    return ", ".join(names)
