"""Ledgerlink benchmark (issue 7): python -m bench.run."""
