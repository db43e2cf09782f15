"""Settings: defaults, environment overrides, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from automl.common.settings import Settings, SettingsError, markdown_table


def test_defaults_are_the_documented_ports():
    settings = Settings.from_env({})
    assert (settings.gateway_port, settings.storage_port, settings.runner_port, settings.notifier_port) == (
        50051,
        50052,
        50053,
        50054,
    )
    assert settings.http_port == 8080
    assert settings.storage_address == "127.0.0.1:50052"


def test_environment_overrides_and_types():
    settings = Settings.from_env(
        {
            "AUTOML_STORAGE_PORT": "6000",
            "AUTOML_STORAGE_TARGET": "storage:50052",
            "AUTOML_CALL_TIMEOUT_SECONDS": "2.5",
            "AUTOML_DATA_DIR": "/srv/automl",
            "AUTOML_HOST": "  ",  # blank means unset
        }
    )
    assert settings.storage_port == 6000
    assert settings.storage_address == "storage:50052"
    assert settings.runner_address == "127.0.0.1:50053"
    assert settings.call_timeout_seconds == 2.5
    assert settings.data_dir == Path("/srv/automl")
    assert settings.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUTOML_GATEWAY_PORT": "abc"}, "AUTOML_GATEWAY_PORT='abc': expected int"),
        ({"AUTOML_GATEWAY_PORT": "70000"}, "AUTOML_GATEWAY_PORT=70000: a port is between 0 and 65535"),
        ({"AUTOML_LOG_FORMAT": "xml"}, "AUTOML_LOG_FORMAT=xml: use text or json"),
        ({"AUTOML_LOG_LEVEL": "LOUD"}, "AUTOML_LOG_LEVEL=LOUD: use DEBUG, INFO, WARNING or ERROR"),
        ({"AUTOML_CALL_TIMEOUT_SECONDS": "0"}, "AUTOML_CALL_TIMEOUT_SECONDS=0.0: must be greater than 0"),
        ({"AUTOML_GC_THRESHOLD": "-1"}, "AUTOML_GC_THRESHOLD=-1: must be 0 or more"),
        (
            {"AUTOML_RUNNER_WORKER_NICE": "25"},
            "AUTOML_RUNNER_WORKER_NICE=25: a nice value is between 0 (the services' priority) and 19 (the lowest)",
        ),
        (
            {"AUTOML_GATEWAY_RUNNING_TTL_SECONDS": "-1"},
            "AUTOML_GATEWAY_RUNNING_TTL_SECONDS=-1.0: must be 0 (no limit) or more",
        ),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message


def test_every_setting_is_documented_with_a_unique_variable():
    fields = dataclasses.fields(Settings)
    names = [f.metadata["env"] for f in fields]
    assert len(set(names)) == len(names)
    assert all(name.startswith("AUTOML_") and f.metadata["help"] for name, f in zip(names, fields, strict=True))
    table = markdown_table()
    assert all(f"`{name}`" in table for name in names)
