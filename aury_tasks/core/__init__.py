"""The ground floor: errors, Redis key names, statuses, ids, redaction, message encoding.

Nothing here imports another part of aury-tasks but this package.
"""
