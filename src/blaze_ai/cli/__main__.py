import sys

from blaze_ai.cli import main

sys.exit(main())
