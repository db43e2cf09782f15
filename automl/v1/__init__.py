"""Generated Python stubs of protos/automl/v1 (regenerate with `make protos`)."""
