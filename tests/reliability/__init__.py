"""The reliability suite: real workers and a real redis-server under faults, with figures."""
