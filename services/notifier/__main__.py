"""Process entry point: `python -m services.notifier`."""

from automl.common.server import run
from services.notifier.server import build

run(build)
