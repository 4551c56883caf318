"""Tasks: the TaskManager and its decorator, the task object, sending, handles and progress."""
