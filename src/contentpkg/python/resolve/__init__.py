"""Resolution: requirements to pins for one interpreter, on resolvelib."""
