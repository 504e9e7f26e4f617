"""``python -m attnverify``: the command line, as the ``attnverify`` script runs it (for an
interpreter whose scripts folder is not on the PATH).

``python -m`` puts the current folder first on ``sys.path``; the script does not. It is taken off
here, so that ``--claims-module NAME`` imports the same module both ways (a file path runs that
file either way, with its own folder searched for what it imports: `attnverify.plugins`).
"""

import os
import sys

from attnverify.cli import main

if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]
sys.exit(main())
