"""Python client of the AutoML suite's public API, and the `automl` command."""

from automl_client.client import Client, Connection

__all__ = ["Client", "Connection"]
