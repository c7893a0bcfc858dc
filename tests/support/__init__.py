"""Helpers shared by tests: real servers started for a test and torn down after it."""
