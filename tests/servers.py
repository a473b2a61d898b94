"""Uvicorn servers in background threads for tests (sandbox, gateway): the same helper the benchmarks use."""

from worker.stack import ServerThread

__all__ = ["ServerThread"]
