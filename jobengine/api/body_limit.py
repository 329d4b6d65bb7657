"""A cap on request bodies, enforced while they arrive.

A batch may carry 1,000 jobs of up to the payload limit each; without a cap the server would
read any body whole into memory before validation could refuse it. The cap is checked against
``Content-Length`` up front; a chunked body (no length) is read here up to the cap before the
app sees it. The refusal is the usual envelope with 413.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobengine.api.errors import envelope


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        if declared is not None:
            await self.app(scope, receive, send)  # the server stops reading at the length
            return
        # A chunked body has no length to check: read it here, up to the cap, then hand it on.
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body: dict[str, Any] = envelope(
            "PAYLOAD_TOO_LARGE",
            f"the request body is larger than {self.max_bytes} bytes",
            "Send fewer jobs per batch, or smaller payloads (JOBENGINE_API_MAX_BODY_BYTES).",
        )
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})
