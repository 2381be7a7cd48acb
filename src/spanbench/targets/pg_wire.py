"""PostgreSQL's extended protocol spoken directly for the load's prepared statements (opt-in).

asyncpg connects, authenticates and prepares; then, for the load, the connection's
transport is handed to ``WireSession``, which writes Bind/Execute/Sync for each execution
and resolves one future at ReadyForQuery. No codec, no record, no waiter bookkeeping: on
the 2-core development machine a query costs ~11 µs of client CPU this way against ~21 µs
through ``protocol.bind_execute`` (``bench/wire_floor.py``), about what pgbench spends.

What it keeps of asyncpg: the connection (closed through asyncpg once the transport is
handed back), its error classes (an ErrorResponse becomes ``asyncpg.PostgresError.new``'s
exception, so SQLSTATE classes and ``is_broken`` work as before) and the prepared
statements, whose parameter types the server knows: parameters go as text, which the
server parses with those types. A statement with a parameter type outside ``TEXT_SAFE``
keeps asyncpg's path, as does a transaction.

On by default (the ``pg_wire`` setting; ``SPANBENCH_PG_WIRE=0`` keeps asyncpg's path for every
execution). ``load/closed.py`` chains a connection's executions from their completions
through ``WireSession.callback``, with no coroutine step per query. ``tests/test_pg_wire.py``
holds the path to asyncpg's answers and to the server's own counts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import struct
from collections.abc import Callable
from typing import Any

import asyncpg

# Parameter types whose text form is what str() (or isoformat()) of the Python value gives.
TEXT_SAFE = {
    16, 20, 21, 23, 25, 700, 701, 1700, 1042, 1043, 19,  # bool int8 int2 int4 text float4 float8 numeric bpchar varchar name
    1082, 1114, 1184, 1083, 2950, 114, 3802,  # date timestamp timestamptz time uuid json jsonb
}
_SYNC = b"S\x00\x00\x00\x04"
_EXECUTE_SYNC = b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00" + _SYNC  # unnamed portal, every row
_pack_i = struct.Struct("!i").pack
_pack_h = struct.Struct("!h").pack
_unpack_i = struct.Struct("!i").unpack_from


def _text(v: Any) -> bytes:
    if isinstance(v, bool):
        return b"t" if v else b"f"
    if isinstance(v, (dt.date, dt.time)):  # datetime is a date
        return v.isoformat().encode()
    return str(v).encode()


class WireSession(asyncio.Protocol):
    """One connection's transport for the load: one execution in flight, as the loops send them."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.transport = conn._transport  # noqa: SLF001 - handed over for the load, handed back at close
        self._asyncpg = self.transport.get_protocol()
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._buf = b""
        self.lost: BaseException | None = None
        self.in_flight = False  # an execution was sent and its ReadyForQuery has not come
        self.owns = True  # the transport is this session's (not asyncpg's) now
        # A load loop that chains executions (load/closed.py) sets this: called with None or
        # the execution's error at its ReadyForQuery, in place of a future.
        self.callback: Callable[[BaseException | None], None] | None = None
        self.transport.set_protocol(self)

    # ---------------------------------------------------------------- the hot path

    def execute(self, head: bytes, params: tuple[Any, ...]) -> asyncio.Future[None]:
        """Send one execution; its future resolves at its ReadyForQuery."""
        self.send(head, params)
        waiter = self._waiter = self._loop.create_future()
        return waiter

    def send(self, head: bytes, params: tuple[Any, ...]) -> None:
        """Bind ``params`` (as text) to the prepared statement of ``head``, execute, sync."""
        if self.lost is not None:
            raise asyncpg.ConnectionDoesNotExistError(f"connection lost: {self.lost}")
        if not self.owns:
            raise asyncpg.InterfaceError("this wire session handed the connection back to asyncpg")
        # One join, one write: Bind (its length filled in once the parameters are sized),
        # then the constant Execute + Sync.
        parts = [b"B", b"", head, _pack_h(len(params))]
        size = 6 + len(head)  # the length field itself, the head, the parameter count
        for v in params:
            if v is None:
                parts.append(b"\xff\xff\xff\xff")
                size += 4
            else:
                b = _text(v)
                parts.append(_pack_i(len(b)))
                parts.append(b)
                size += 4 + len(b)
        parts.append(b"\x00\x00")  # result columns: text (they are not read)
        parts[1] = _pack_i(size + 2)
        parts.append(_EXECUTE_SYNC)
        self.transport.write(b"".join(parts))
        self.in_flight = True

    def data_received(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos, end = 0, len(data)
        while pos + 5 <= end:
            kind = data[pos]
            n = _unpack_i(data, pos + 1)[0]
            if pos + 1 + n > end:
                break  # the rest of this message is still on its way
            if kind == 69:  # 'E' ErrorResponse: the execution failed; ReadyForQuery follows
                self._error = _error(data[pos + 5:pos + 1 + n])
            elif kind == 90:  # 'Z' ReadyForQuery: this execution is over
                self.in_flight = False
                error, self._error = self._error, None
                cb = self.callback
                if cb is not None:
                    cb(error)  # may send the next execution at once
                else:
                    waiter, self._waiter = self._waiter, None
                    if waiter is not None and not waiter.done():
                        if error is None:
                            waiter.set_result(None)
                        else:
                            waiter.set_exception(error)
            pos += 1 + n
        if pos < end:
            self._buf = data[pos:]

    # ---------------------------------------------------------------- the cold path

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("the server closed the connection")
        gone = asyncpg.ConnectionDoesNotExistError(f"connection lost: {self.lost}")
        in_flight, self.in_flight = self.in_flight, False
        cb = self.callback
        if cb is not None and in_flight:
            cb(gone)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(gone)
        # asyncpg learns of it too, so its connection reads as closed
        self._asyncpg.connection_lost(exc)

    def take(self) -> None:
        """Own the transport again (after asyncpg used the connection for something else)."""
        self.transport.set_protocol(self)
        self.owns = True

    def hand_back(self) -> bool:
        """Give the transport back to asyncpg when no execution is in flight; whether it could."""
        if self.lost is not None or self.in_flight or self._buf:
            return False
        if self.owns:
            self.transport.set_protocol(self._asyncpg)
            self.owns = False
        return True


def _error(body: bytes) -> BaseException:
    fields: dict[str, str] = {}
    for part in body.split(b"\x00"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return asyncpg.PostgresError.new(fields)


def statement_head(stmt: asyncpg.prepared_stmt.PreparedStatement) -> bytes | None:
    """The start of a Bind for ``stmt`` (unnamed portal, text parameters), or None when one of
    its parameter types has no safe text form here (it keeps asyncpg's path)."""
    if any(t.oid not in TEXT_SAFE for t in stmt.get_parameters()):
        return None
    name = stmt._state.name.encode()  # noqa: SLF001 - the server's name of the prepared statement
    return b"\x00" + name + b"\x00" + b"\x00\x00"  # portal "", statement, 0 format codes: all text


def wire_fn(session: WireSession, head: bytes, stmt: asyncpg.prepared_stmt.PreparedStatement) -> Any:
    """A QueryFn that is a plain function returning the execution's future: no coroutine."""
    # _stmt keeps the PreparedStatement alive: asyncpg closes a collected one on the server
    def execute(args: tuple[Any, ...], _run=session.execute, _head=head, _stmt=stmt) -> asyncio.Future[None]:
        return _run(_head, args)

    return execute
