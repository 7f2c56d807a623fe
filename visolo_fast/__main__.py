import sys

from visolo_fast.cli import main

sys.exit(main())
