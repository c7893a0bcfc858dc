"""Real servers for the tests and the benchmark: a throwaway PostgreSQL cluster (``pg``) and OpenSSH's sshd
(``sshd``).

Development only: neither the ``ledgerlink`` package nor the stand-ins import it, and it is not installed
into the image. The bench uses it instead of the tests' helpers (import-linter keeps it so).
"""
from __future__ import annotations

import os


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def server_missing(message: str):
    """A real server the tests need is not installed: a failure in CI (which must provide it), a skip elsewhere."""
    import pytest  # only a missing server makes this a test-runner matter

    if in_ci():
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)
