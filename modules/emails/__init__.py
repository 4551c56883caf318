"""Example module: transactional emails sent by background tasks."""
