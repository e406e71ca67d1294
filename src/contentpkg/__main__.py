"""``python -m contentpkg`` behaves exactly like the ``cpk`` command."""

import sys

from contentpkg.cli import main

# The guard matters: bytecode is compiled in spawned worker processes, which
# import the main module again and must not run the command a second time.
if __name__ == "__main__":
    sys.exit(main())
