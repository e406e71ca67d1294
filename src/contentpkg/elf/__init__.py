"""The ELF namespace: reading, RUNPATH patching, loader emulation, env dirs."""
