"""``python -m halfopen``: the same CLI as the ``halfopen`` command."""

import sys

from halfopen.cli.main import main

sys.exit(main())
