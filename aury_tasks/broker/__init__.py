"""Brokers: building one from a URL, and the embedded server used when no URL is set."""
