"""What a MySQL error says about the server rather than about a statement: the server cannot be
reached (or the connection to it was lost), it refused our user, or it has no such database.

One classifier for every MySQL client of the registry: the catalog and the agents' metadata databases
(peewee, :mod:`fate_registry.db`) and the MySQL model store (pymysql), so one error reads the same
wherever it happens. A :class:`Failure`'s words come from this module or from the errno text of a
socket error, never from the server's message as it is: no user input and no secret can ride on them.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import peewee
import pymysql
from pymysql.constants import CR, ER


class ServerFailure(enum.Enum):
    UNREACHABLE = enum.auto()
    ACCESS_DENIED = enum.auto()
    UNKNOWN_DATABASE = enum.auto()


@dataclass(frozen=True)
class Failure:
    kind: ServerFailure
    detail: str  # a few words: "connection refused", "access denied (wrong password?)"


_ACCESS_DENIED_NO_PASSWORD = 1698  # MariaDB's unix_socket / auth-plugin refusal
_ACCESS_DENIED = {
    ER.ACCESS_DENIED_ERROR: "access denied (wrong password?)",
    _ACCESS_DENIED_NO_PASSWORD: "access denied (wrong password?)",
    ER.DBACCESS_DENIED_ERROR: "access denied to the database (no grant on it?)",
}
_CONNECTION_KILLED = 1927  # MariaDB: a connection the server (or an administrator) killed
# The connection is gone, or the server gave none: pymysql's client errors, and a few of the server's.
_LOST = {
    CR.CR_SERVER_GONE_ERROR: "the server has gone away",
    CR.CR_SERVER_LOST: "the connection was lost",
    0: "the connection is closed",  # pymysql's InterfaceError(0, "") on a connection it closed
    ER.CON_COUNT_ERROR: "too many connections",
    ER.SERVER_SHUTDOWN: "the server is shutting down",
    _CONNECTION_KILLED: "the connection was killed",
}
_CANNOT_CONNECT = {CR.CR_CONN_HOST_ERROR, CR.CR_CONNECTION_ERROR}
# "Can't connect to MySQL server on 'h' ([Errno 111] Connection refused)" or "(… (timed out))"
_SOCKET_REASON = re.compile(r"\((?:\[Errno -?\d+\] )?([A-Za-z][A-Za-z ,'-]*)\)\s*$")


def _driver_error(exc: BaseException) -> pymysql.MySQLError | None:
    """pymysql's error itself, or the one peewee wrapped (``orig``); None for any other error (SQLite's)."""
    if isinstance(exc, pymysql.MySQLError):
        return exc
    orig = getattr(exc, "orig", None) if isinstance(exc, peewee.PeeweeException) else None
    return orig if isinstance(orig, pymysql.MySQLError) else None


def _cannot_connect(message: str) -> str:
    found = _SOCKET_REASON.search(message)
    return found.group(1).lower() if found else "cannot connect"


def server_failure(exc: BaseException) -> Failure | None:
    """What ``exc`` (pymysql's error, or peewee's wrapping of one) says about the server; None when it is
    about the statement (a constraint, a deadlock, a syntax error) or not a MySQL error at all."""
    error = _driver_error(exc)
    if error is None:
        return None
    code = error.args[0] if error.args and isinstance(error.args[0], int) else 0
    message = str(error.args[1]) if len(error.args) > 1 else ""
    if code in _ACCESS_DENIED:
        return Failure(ServerFailure.ACCESS_DENIED, _ACCESS_DENIED[code])
    if code == ER.BAD_DB_ERROR:
        return Failure(ServerFailure.UNKNOWN_DATABASE, "no such database")
    if not isinstance(error, pymysql.OperationalError | pymysql.InterfaceError):
        return None
    if code in _CANNOT_CONNECT:
        return Failure(ServerFailure.UNREACHABLE, _cannot_connect(message))
    if code in _LOST:
        return Failure(ServerFailure.UNREACHABLE, _LOST[code])
    if code >= 2000:
        return Failure(ServerFailure.UNREACHABLE, f"MySQL client error {code}")
    return None
