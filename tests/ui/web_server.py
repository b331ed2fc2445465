"""The web app served from a background thread (its own event loop) on 127.0.0.1:<free port>, for
tests that drive it with blocking clients (a browser, schemathesis)."""

from __future__ import annotations

import asyncio
import pathlib
import threading
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from x0node.web.app import create_app
from x0node.web.config import WebConfig
from x0node.web.provider import NodeStateProvider


class ThreadedServer:
    def __init__(self, provider: NodeStateProvider, data_dir: pathlib.Path, config: WebConfig | None = None,
                 setup: Callable[[web.Application], None] | None = None) -> None:
        self.provider = provider
        self.setup = setup
        self.data_dir = data_dir
        self.config = config or WebConfig()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = create_app(self.provider, self.config, self.data_dir, CollectorRegistry())
        if self.setup is not None:  # more routes, as a service adds its own (e.g. /api/v1/state)
            self.setup(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.close()

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        assert self.ready.wait(10), "web server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
