"""Serve a sandbox HTTP stand-in for the length of a test, and stop it promptly."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from sandbox.httpbase import SandboxServer

# serve_forever's default poll of 0.5 s makes every shutdown() wait up to that long; tests stop many servers.
POLL_SECONDS = 0.05


@contextlib.contextmanager
def serving(server: SandboxServer) -> Iterator[SandboxServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_SECONDS},
                              name=f"test-{type(server.RequestHandlerClass).__name__}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
