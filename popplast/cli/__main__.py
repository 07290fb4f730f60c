"""`python -m popplast.cli`, as `python -m popplast`."""

import sys

from popplast.cli.main import main

sys.exit(main())
