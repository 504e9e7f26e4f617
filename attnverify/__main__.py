"""``python -m attnverify``: the command line, as the ``attnverify`` script runs it (for an
interpreter whose scripts folder is not on the PATH)."""

import sys

from attnverify.cli import main

sys.exit(main())
