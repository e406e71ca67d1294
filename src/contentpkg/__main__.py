"""``python -m contentpkg`` behaves exactly like the ``cpk`` command."""

import sys

from contentpkg.cli import main

sys.exit(main())
