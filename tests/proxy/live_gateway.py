"""The limits of the ``door_server`` fixture (tests/proxy/conftest.py): small, so tests reach them."""

from __future__ import annotations

ADMIN_PASSWORD = "door-test-password-1"
HEAD_TIMEOUT = 1.5
KEEPALIVE_TIMEOUT = 3.0
MAX_HEAD = 4096
MAX_CONNECTIONS = 60
PENDING_PER_IP = 5
PENDING_GRACE = 0.2
MAX_IDLE_PER_IP = 4
BODY_TIMEOUT = 2.0
