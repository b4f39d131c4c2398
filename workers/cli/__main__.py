"""``python -m workers.cli``: the same as the ``framequeue`` command."""

import sys

from workers.cli.main import main

sys.exit(main())
