"""Names the replica that answered: every response gets ``X-Hub-Backend: <node>`` (e.g. gpu-0).

Loaded into vLLM's own API server with ``--middleware hub_backend_header.BackendHeader``: vLLM
adds a class given there with ``app.add_middleware`` (vllm/entrypoints/openai/api_server.py,
v0.24.0, ``for middleware in args.middleware``). A plain ASGI middleware, as vLLM's own
XRequestIdMiddleware is: it touches only the response start, so streamed bodies pass through
unbuffered. The name comes from HUB_BACKEND_NAME, set per node in the container's environment.
"""

import os

HEADER = b"x-hub-backend"


class BackendHeader:
    def __init__(self, app):
        self.app = app
        name = os.environ.get("HUB_BACKEND_NAME", "")
        # A header value is one line of visible ASCII; anything else would be a bug in the spec.
        if not name or not all(33 <= ord(c) < 127 for c in name):
            raise ValueError("HUB_BACKEND_NAME must name this replica, e.g. gpu-0")
        self.value = name.encode("ascii")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for (k, v) in message.get("headers", []) if k.lower() != HEADER]
                headers.append((HEADER, self.value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_named)
