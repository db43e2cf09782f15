"""The runner service: AutoML searches with aikit, refit, test and predict."""
