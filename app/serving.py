"""The HTTP protocol `hitmap serve` runs: uvicorn's httptools protocol with a cap on
the request head.

httptools (llhttp) and uvicorn put no limit on the request line and headers: an
8 MB header was read, buffered and handed to the app. Here a request whose head
(request line and headers) passes ``MAX_REQUEST_HEAD_BYTES`` is answered
``431 Request Header Fields Too Large`` and its connection closed, as nginx does
(``large_client_header_buffers``, infra/nginx). Bodies are not counted: forms and
beacons have their own limits.

The count is per chunk the server reads while a head is incomplete, so a chunk
that also ends an earlier pipelined request counts that request's tail too; no
browser pipelines, and the cap is far above any real head.
"""

from __future__ import annotations

import logging

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

MAX_REQUEST_HEAD_BYTES = 32 * 1024  # nginx's default: 4 buffers of 8k
PROTOCOL = "app.serving:HeadCappedHttpToolsProtocol"  # uvicorn's `http` option
log = logging.getLogger("hitmap.serving")

_REFUSAL = b"request header fields too large\n"


class HeadCappedHttpToolsProtocol(HttpToolsProtocol):
    _in_head = False
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def _refuse(self) -> None:
        self._in_head = False
        log.warning("request head over %d bytes: answered 431", MAX_REQUEST_HEAD_BYTES)
        content = [
            STATUS_LINE[431],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(_REFUSAL)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            _REFUSAL,
        ]
        self.transport.write(b"".join(content))
        self.transport.close()
