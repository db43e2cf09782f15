"""`python -m automl_client`: the `automl` command."""

import sys

from automl_client.cli import main

sys.exit(main())
