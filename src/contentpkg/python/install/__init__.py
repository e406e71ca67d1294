"""Wheels into the store: checked, unpacked into one entry, bytecode compiled once."""
