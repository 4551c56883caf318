"""The Redis script runtime: Lua scripts loaded from package files, and how calls are pipelined."""
