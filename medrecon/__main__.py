"""``python -m medrecon``: the command line (:mod:`medrecon.commands`); ``torchrun -m medrecon`` runs it per rank."""

import sys

from medrecon.commands import main

sys.exit(main())
