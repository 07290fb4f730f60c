import sys

from popplast.cli import main

sys.exit(main())
