"""`python -m crowdselect_lib.scoring --params params/paper.yaml` (or under `accelerate launch`)."""
import sys

from .steps import main

sys.exit(main())
