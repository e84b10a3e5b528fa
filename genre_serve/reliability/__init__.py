"""Reliability checks against a running genre_serve: bad input at the model
and HTTP boundaries (shared by the test suite and benchmarks/reliability.py)."""
