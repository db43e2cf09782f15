"""Process entry point: `python -m services.runner`."""

from automl.common.server import run
from services.runner.server import build

if __name__ == "__main__":  # worker processes import the main module: they must not serve
    run(build)
