"""uvicorn's h11 protocol with a read deadline: a connection that does not finish its request is closed.

uvicorn 0.54 arms one timer per connection, ``timeout_keep_alive``, and only after a response;
any byte received cancels it. A client that connects and sends nothing, or sends its headers a
byte at a time, keeps a connection (a file descriptor and a task) forever, and
``h11_max_incomplete_event_size`` bounds only the size of those headers, not their time.
:class:`TimedH11Protocol` adds the missing deadline: the headers of each request must arrive
within ``header_timeout_s`` of the connection (or of the previous response), and while the body
streams in, no gap between two chunks may be longer. A connection past it with no request yet
or stalled in its body gets ``408 Request Timeout`` and is closed (the app then sees the client
gone). Once a request is fully received, the app's own ``--request-timeout`` rules.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 56\r\n\r\n"
    b"the request was not received in time; send it at once.\n"
)


class TimedH11Protocol(H11Protocol):
    """:class:`H11Protocol` with the read deadline of the module doc (``header_timeout_s``, set
    by ``fashion serve`` from ``--header-timeout`` before it serves)."""

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._reading_body():
            self._arm()  # the body is streaming: the deadline counts from its last chunk

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.more_body and not self.cycle.response_complete:
            self._disarm()  # fully received: the app's request timeout takes over

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's headers get the same deadline

    def _reading_body(self) -> bool:
        return self.cycle is not None and self.cycle.more_body and not self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _expired(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started or self.cycle.response_complete:
            self.transport.write(_TIMEOUT_RESPONSE)  # no response of the app is under way
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # what the app still sends is dropped
        self.logger.info("closed a connection that did not send its request within %g s",
                         self.header_timeout_s)
        self.transport.close()


__all__ = ["TimedH11Protocol"]
