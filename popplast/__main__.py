import sys

from popplast.cli.main import main

sys.exit(main())
