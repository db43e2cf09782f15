"""The AutoML suite's shared package: generated contracts (automl.v1) and the
little every service needs (automl.common: settings, server factory, errors)."""

__version__ = "0.1.0"
