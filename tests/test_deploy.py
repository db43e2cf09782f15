"""What a reviewer checks in docker-compose.yml, without a Docker engine."""

from __future__ import annotations

import dataclasses

import yaml

from automl.common.settings import Settings
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
KNOWN = {f.metadata["env"] for f in dataclasses.fields(Settings)}


def test_environment_names_only_real_settings():
    for name, service in COMPOSE["services"].items():
        unknown = set(service.get("environment", {})) - KNOWN
        assert not unknown, f"{name} sets variables the settings module does not read: {sorted(unknown)}"


def test_every_dependency_has_a_health_check():
    for name, service in COMPOSE["services"].items():
        for target in service.get("depends_on", {}):
            assert "healthcheck" in COMPOSE["services"][target], f"{name} waits on {target}, which has no health check"


def test_every_service_starts_a_real_module():
    modules = {s["command"][-1] for s in COMPOSE["services"].values()}
    assert modules == {"services.storage", "services.runner", "services.notifier", "gateway"}
