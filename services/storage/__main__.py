"""Process entry point: `python -m services.storage`."""

from automl.common.server import run
from services.storage.server import build

run(build)
