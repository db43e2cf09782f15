"""The notifier service: run events to streams and webhooks, with replay."""
