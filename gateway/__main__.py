"""Process entry point: `python -m gateway`."""

from automl.common.server import run
from gateway.server import build

run(build)
