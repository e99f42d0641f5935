"""The bundled Ollama simulator: Ollama's wire format with fake tokens, fault injection and a record.

Use ``python -m simulator`` on its own, ``serve_in_thread(config)`` / ``serve_in_subprocess(config)``
in tests, or ``create_app(config)`` as a plain ASGI application.
"""

from simulator.app import Simulator, create_app
from simulator.config import ConfigError, SimulatorConfig
from simulator.faults import Fault, FaultError, parse_fault
from simulator.server import (
    ProcessHandle,
    SimulatorHandle,
    ThreadHandle,
    run,
    serve_in_subprocess,
    serve_in_thread,
)

__all__ = [
    "ConfigError",
    "Fault",
    "FaultError",
    "ProcessHandle",
    "Simulator",
    "SimulatorConfig",
    "SimulatorHandle",
    "ThreadHandle",
    "create_app",
    "parse_fault",
    "run",
    "serve_in_subprocess",
    "serve_in_thread",
]
