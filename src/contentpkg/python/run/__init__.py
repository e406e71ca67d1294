"""Running in a project's environment: options, the one plan, lock state,
sync, compose, and the memo of the hot path."""
