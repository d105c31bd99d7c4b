"""A loopback TCP proxy whose connections a test can cut, refuse or silence at will.

Used by fault tests: point a backend at ``proxy.port`` instead of the server's port, then

- :meth:`TcpProxy.cut` drops every open connection (both directions, abruptly, with a reset);
- :meth:`TcpProxy.down` starts a sustained outage until :meth:`TcpProxy.up`, in one of two modes:

  - ``"refuse"``: open connections are cut and every new one is reset as soon as it is accepted,
    the way a stopped server or a closed port looks to a client;
  - ``"blackhole"``: open connections go silent (bytes are swallowed in both directions, nothing is
    closed) and new ones are accepted but never answered, the way a dead network path looks: a
    client notices only through its own timeouts. On :meth:`up` every connection that went silent
    is reset, as a TCP stack gives up on a path that lost its bytes; new connections work again.

Every connection a client opens is recorded in :attr:`TcpProxy.attempts`, and every chunk a client
sends into the black hole in :attr:`TcpProxy.swallowed` (monotonic times), so that a test can count
how hard the clients knocked during an outage. Runs in its own thread with its own event loop, so
it works for worker subprocesses too.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Literal

import anyio
import anyio.abc
from anyio.from_thread import start_blocking_portal

OutageMode = Literal["refuse", "blackhole"]


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._portal_cm: Any = None
        self._portal: Any = None
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self._streams: set[anyio.abc.SocketStream] = set()
        self._silent: set[anyio.abc.SocketStream] = set()
        self.outage: OutageMode | None = None
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self.attempts: list[float] = []
        self.swallowed: list[float] = []

    def __enter__(self) -> TcpProxy:
        self._portal_cm = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._listener = self._portal.call(self._listen)
        self.port = int(self._listener.extra(anyio.abc.SocketAttribute.local_address)[1])
        self._portal.start_task_soon(self._serve)
        return self

    def __exit__(self, *exc: object) -> None:
        self._portal.call(self._close)
        self._portal_cm.__exit__(*exc)

    async def _listen(self) -> anyio.abc.Listener[anyio.abc.SocketStream]:
        return await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def _serve(self) -> None:
        assert self._listener is not None
        await self._listener.serve(self._handle)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        self.attempts.append(time.monotonic())
        if self.outage == "refuse":
            await self._abort(client)
            return
        if self.outage == "blackhole":
            await self._hold(client)
            return
        try:
            upstream = await anyio.connect_tcp(*self.target)
        except OSError:
            await self._abort(client)
            return
        self.connections += 1
        self._streams.update((client, upstream))
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._pump, client, upstream, group.cancel_scope)
                group.start_soon(self._pump, upstream, client, group.cancel_scope)
        finally:
            self._streams.difference_update((client, upstream))
            for stream in (client, upstream):
                await self._abort(stream)

    async def _hold(self, client: anyio.abc.SocketStream) -> None:
        """Accept and never answer: read and swallow until :meth:`up` resets the connection."""
        self._silent.add(client)
        try:
            async for _chunk in client:
                self.swallowed.append(time.monotonic())
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            self._silent.discard(client)
            await self._abort(client)

    async def _pump(self, source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream, scope: anyio.CancelScope) -> None:
        try:
            async for chunk in source:
                if self.outage == "blackhole":
                    self.swallowed.append(time.monotonic())
                    continue
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        scope.cancel()

    @staticmethod
    async def _abort(stream: anyio.abc.SocketStream) -> None:
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        try:
            # SO_LINGER 0: close with RST, the way a dropped network path looks to a client.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        await stream.aclose()

    async def _cut(self) -> int:
        streams = list(self._streams)
        self._streams.clear()
        for stream in streams:
            await self._abort(stream)
        return len(streams) // 2

    async def _set_outage(self, mode: OutageMode | None) -> None:
        # Runs on the proxy's loop, so no connection is accepted between the reset and the switch.
        previous, self.outage = self.outage, mode
        if mode == "refuse" or previous == "blackhole":
            await self._cut()
            for stream in list(self._silent):
                await self._abort(stream)

    async def _close(self) -> None:
        await self._set_outage("refuse")
        if self._listener is not None:
            await self._listener.aclose()

    def cut(self) -> int:
        """Drop every open connection; return how many were dropped."""
        self.cuts += 1
        return int(self._portal.call(self._cut))

    def down(self, mode: OutageMode = "refuse") -> None:
        """Start an outage in ``mode`` (see the module docstring); it lasts until :meth:`up`."""
        self._portal.call(self._set_outage, mode)

    def up(self) -> None:
        """End the outage: new connections are forwarded again."""
        self._portal.call(self._set_outage, None)

    def knocks(self, start: float, end: float) -> list[float]:
        """Monotonic times of the new connections and swallowed chunks between ``start`` and ``end``."""
        return sorted(t for t in [*self.attempts, *self.swallowed] if start <= t <= end)
