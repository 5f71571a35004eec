import sys

from treesynth.cli.main import main

sys.exit(main())
