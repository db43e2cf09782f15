"""Process entry point: `python -m services.runner`."""

from automl.common.server import run
from services.runner.server import build

run(build)
