import sys

from harmbench.cli import main

sys.exit(main())
