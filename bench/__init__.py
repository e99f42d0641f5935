"""The benchmark harness: scenarios against the gateway and straight against the simulator (see README.md)."""
