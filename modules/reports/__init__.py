"""Example module: reports computed in the background."""
