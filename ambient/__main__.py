"""``python -m ambient`` is the ``ambient`` command."""

import sys

from ambient.cli.main import main

sys.exit(main())
