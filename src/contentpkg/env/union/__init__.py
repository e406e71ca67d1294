"""Unions: a process tree's private ``/usr`` (and ``/etc``, ``/opt``) made of store entries.

``prepare`` finds the entries (unmodified, :mod:`.entries`) and composes
their merged lower (:mod:`.compose`); ``exec_in_union`` enters a new user
and mount namespace (:mod:`.namespace`), overlays the farm onto the host's
directories, shows the store at its fixed path, and execs the command.
"""
