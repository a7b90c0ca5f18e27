"""A TCP proxy in front of PostgreSQL that a test can cut and restore.

:meth:`TcpProxy.cut` drops every connection through it (the client sees a reset) and,
until :meth:`TcpProxy.restore`, either refuses new connections (accepts and closes
them at once, like a database that is down) or blackholes them (accepts and never
answers, like a network that drops packets). Nothing else on the machine is touched:
the real database keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from sqlalchemy.engine import make_url

Mode = Literal["refuse", "blackhole"]
CHUNK = 65_536


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.cut_mode: Mode | None = None
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._held: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self.accepted = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, database_url: str) -> str:
        """``database_url`` (a PostgreSQL URL) pointed at this proxy instead."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    def cut(self, mode: Mode = "blackhole") -> None:
        """Drop every open connection; refuse or blackhole new ones."""
        self.cut_mode = mode
        for writer in list(self._links):
            _abort(writer)
        self._links.clear()

    def restore(self) -> None:
        """Forward new connections again (blackholed ones are dropped now)."""
        self.cut_mode = None
        for writer in list(self._held):
            _abort(writer)
        self._held.clear()

    @property
    def open_links(self) -> int:
        """Client connections currently forwarded to the database."""
        return len(self._links) // 2

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        self.restore()
        for pump in list(self._pumps):
            pump.cancel()
        for pump in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        if self.cut_mode == "refuse":
            _abort(client)
            return
        if self.cut_mode == "blackhole":
            self._held.add(client)  # read nothing, answer nothing
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            _abort(client)
            return
        if self.cut_mode is not None:  # cut while connecting
            _abort(upstream)
            _abort(client)
            return
        self._links |= {client, upstream}
        for reader, writer in (
            (client_reader, upstream),
            (upstream_reader, client),
        ):
            pump = asyncio.create_task(self._pump(reader, writer, client, upstream))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *ends: asyncio.StreamWriter,
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            for end in ends:
                self._links.discard(end)
                _abort(end)


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()  # a reset, not a polite close


@contextlib.asynccontextmanager
async def proxy_to(database_url: str) -> AsyncIterator[TcpProxy]:
    """A started proxy to the PostgreSQL server of ``database_url``."""
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
