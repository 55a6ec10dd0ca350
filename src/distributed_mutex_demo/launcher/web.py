"""The demo's web page: the same state the terminal panel draws (state.py), pushed to the browser
by server-sent events, and buttons that ask the launcher to kill, stop, pause or cut off the
leader, or to add an instance.

Starlette on uvicorn: a small, well-kept ASGI framework whose StreamingResponse is all SSE needs,
and a server that runs in a thread beside the launcher's loop (aiohttp would do too; Starlette
needs no event loop of ours). The page is plain HTML, CSS and JavaScript from this package
(static/): no build step, no CDN, so it works offline. It binds to 127.0.0.1 only, and what it
sends is the state snapshot, which holds names, terms, times and log lines, never a setting's
value (the instances redact secrets from their own log lines before printing them)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

if TYPE_CHECKING:
    from distributed_mutex_demo.launcher.cluster import Demo

STATIC = Path(__file__).parent / "static"
HOST = "127.0.0.1"
KEEPALIVE = 1.0  # seconds between events when nothing changed: the page's clock and countdowns tick


def make_app(demo: Demo) -> Starlette:
    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            version = -1
            while not demo.stopping.is_set():
                if await request.is_disconnected():
                    return
                snapshot = demo.state.snapshot()
                version = snapshot["version"]
                yield f"data: {json.dumps(snapshot)}\n\n"
                # Wait in a thread for the launcher's next change (or the keep-alive).
                await asyncio.to_thread(demo.state.wait_for_change, version, KEEPALIVE)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def action(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            args: dict[str, Any] = await request.json()
        except ValueError:
            args = {}
        seconds = args.get("seconds")
        if seconds is not None and not (isinstance(seconds, (int, float)) and 1 <= seconds <= 120):
            return JSONResponse({"ok": False, "message": "seconds: must be a number from 1 to 120"}, status_code=400)
        answer = demo.request(name, {"seconds": seconds})
        try:
            message = await asyncio.to_thread(answer.result, 5)
        except TimeoutError:
            message = "asked; the demo is busy"
        return JSONResponse({"ok": True, "message": message})

    return Starlette(routes=[Route("/", page), Route("/events", events),
                             Route("/action/{name}", action, methods=["POST"]),
                             Mount("/static", StaticFiles(directory=STATIC), name="static")])


class WebView:
    """uvicorn serving the page on 127.0.0.1 at a free port, in a thread of its own."""

    def __init__(self, demo: Demo) -> None:
        import uvicorn

        with socket.socket() as probe:  # a free port; uvicorn binds it right after
            probe.bind((HOST, 0))
            self.port: int = probe.getsockname()[1]
        config = uvicorn.Config(make_app(demo), host=HOST, port=self.port, log_level="warning",
                                access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)  # off the main thread it leaves the signals to the launcher
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def start(self, timeout: float = 10) -> None:
        self.thread.start()
        for _ in range(int(timeout * 20)):
            if self.server.started:
                return
            self.thread.join(0.05)
        raise RuntimeError(f"the web page's server did not start on {self.url}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
