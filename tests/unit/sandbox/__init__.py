"""Unit tests of the sandbox stand-ins."""
