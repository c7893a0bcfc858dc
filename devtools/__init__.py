"""Real servers for the tests and the benchmark: a throwaway PostgreSQL cluster (``pg``) and OpenSSH's sshd
(``sshd``).

Development only: neither the ``ledgerlink`` package nor the stand-ins import it, and it is not installed
into the image. The bench uses it instead of the tests' helpers (import-linter keeps it so).
"""
