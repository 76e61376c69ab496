"""The deployment files agree with each other and with the settings.

Dockerfile, docker-compose.yml, deploy/entrypoint.sh, deploy/gunicorn.conf.py and the Kubernetes
manifests in deploy/k8s only meet the code when a container starts: a renamed variable, port,
probe path or subcommand would break a deploy without breaking a test. These tests read the files
(YAML parsed, the Dockerfile line by line) and compare them; no Docker, cluster or database.
"""

from __future__ import annotations

import json
import os
import re
import runpy
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from backoffice.health import LIVE_PATH, READY_PATH

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
K8S_DIR = ROOT / "deploy" / "k8s"

APP_SERVICES = ("migrate", "web", "worker")
# Set by the Dockerfile for Python and the shell, not for the app.
RUNTIME_ENV = {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}
# Values that must never sit in a ConfigMap, a compose default or an image.
SECRET_NAMES = {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"}


# --- Readers --------------------------------------------------------------------------------------


def settings_env_names() -> set[str]:
    source = (ROOT / "backoffice" / "settings.py").read_text()
    return {name for _, name in re.findall(r'env_(str|bool|int|list)\(\s*"([A-Z_]+)"', source)}


def gunicorn_env_names() -> set[str]:
    return set(re.findall(r'os\.environ\.get\("([A-Z_]+)"', GUNICORN_CONF.read_text()))


def known_env_names() -> set[str]:
    return settings_env_names() | gunicorn_env_names()


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].strip() + " "
            continue
        current += stripped
        keyword, _, arguments = current.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    assert not current, "the Dockerfile ends in a continuation line"
    return instructions


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: what the image that runs is made of."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def instruction_values(keyword: str, instructions: list[tuple[str, str]]) -> list[str]:
    return [arguments for kw, arguments in instructions if kw == keyword]


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """Variables set by ENV lines, in the KEY=value form (several per line allowed)."""
    env: dict[str, str] = {}
    for arguments in instruction_values("ENV", instructions):
        for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)", arguments):
            env[key] = value
    return env


def exec_form(arguments: str) -> list[str]:
    """The JSON list of an exec-form ENTRYPOINT, CMD or HEALTHCHECK CMD."""
    return json.loads(arguments)


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_service(name: str) -> dict:
    return compose()["services"][name]


def k8s_documents() -> list[dict]:
    documents = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def k8s_objects(kind: str) -> list[dict]:
    return [doc for doc in k8s_documents() if doc["kind"] == kind]


def k8s_object(kind: str, name: str) -> dict:
    matches = [doc for doc in k8s_objects(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_specs() -> dict[str, dict]:
    """The pod spec of every Deployment and Job, by object name."""
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for doc in k8s_documents()
        if doc["kind"] in ("Deployment", "Job")
    }


def web_container() -> dict:
    (container,) = pod_specs()["backoffice-web"]["containers"]
    return container


def entrypoint_subcommands() -> dict[str, str]:
    """The entrypoint's `case` arms: subcommand -> the commands it runs (the `*` arm excluded)."""
    arms = re.findall(
        r"^\s*([a-z][a-z|-]*)\)\s*$(.*?);;", ENTRYPOINT.read_text(), flags=re.MULTILINE | re.DOTALL
    )
    return {name: " ".join(body.split()) for pattern, body in arms for name in pattern.split("|")}


def load_gunicorn_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    for name in gunicorn_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def url_in(command: list[str] | str) -> str:
    text = command if isinstance(command, str) else " ".join(command)
    match = re.search(r"https?://[^'\"\s]+", text)
    assert match, f"no URL in {command!r}"
    return match.group(0)


# --- Environment variables ------------------------------------------------------------------------


def test_the_env_var_readers_find_the_names_they_should():
    # Guards the regexes below: if settings.py or gunicorn.conf.py stop matching them, every
    # other environment test would pass vacuously.
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"} <= settings_env_names()
    assert gunicorn_env_names() == {
        "PORT",
        "WEB_CONCURRENCY",
        "GUNICORN_TIMEOUT",
        "FORWARDED_ALLOW_IPS",
    }


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_env_var_of_a_compose_app_service_is_read_by_the_app(service):
    environment = compose_service(service)["environment"]
    assert set(environment) - known_env_names() == set()


def test_postgres_variables_are_set_only_on_the_db_service():
    for name, service in compose()["services"].items():
        postgres_vars = {
            var for var in service.get("environment", {}) if var.startswith("POSTGRES_")
        }
        if name == "db":
            assert postgres_vars == {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"}
        else:
            assert postgres_vars == set(), name


def test_every_configmap_and_secret_key_is_read_by_the_app():
    configmap = k8s_object("ConfigMap", "backoffice-config")
    secret = k8s_object("Secret", "backoffice-secrets")
    assert set(configmap["data"]) - known_env_names() == set()
    assert set(secret["stringData"]) - known_env_names() == set()


def test_secrets_live_in_the_secret_and_only_as_placeholders():
    configmap = k8s_object("ConfigMap", "backoffice-config")
    secret = k8s_object("Secret", "backoffice-secrets")
    assert set(secret["stringData"]) == SECRET_NAMES
    assert SECRET_NAMES & set(configmap["data"]) == set()
    for name, value in secret["stringData"].items():
        assert "replace-me" in value, f"{name} in the example Secret looks like a real value"


def test_configmap_values_are_strings():
    # envFrom needs strings; an unquoted 1 or true in YAML is rejected by the API server.
    configmap = k8s_object("ConfigMap", "backoffice-config")
    assert all(isinstance(value, str) for value in configmap["data"].values())


def test_compose_requires_a_secret_key_from_the_environment():
    secret_key = compose()["x-app-env"]["SECRET_KEY"]
    assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", secret_key), "no default key in the file"


def test_the_image_sets_no_secret_and_only_known_variables():
    instructions = dockerfile_instructions()
    runtime_env = dockerfile_env(final_stage())
    assert set(runtime_env) - RUNTIME_ENV - known_env_names() == set()
    assert SECRET_NAMES & set(dockerfile_env(instructions)) == set()
    for arguments in instruction_values("ARG", instructions):
        assert "SECRET_KEY" not in arguments


# --- Ports ----------------------------------------------------------------------------------------


def test_one_port_from_gunicorn_to_the_kubernetes_service(monkeypatch):
    (bind,) = load_gunicorn_conf(monkeypatch)["bind"]
    gunicorn_port = int(bind.rsplit(":", 1)[1])

    (exposed,) = instruction_values("EXPOSE", final_stage())
    compose_ports = compose_service("web")["ports"]
    compose_container_ports = {int(str(mapping).rsplit(":", 1)[1]) for mapping in compose_ports}

    named_ports = {port["name"]: port["containerPort"] for port in web_container()["ports"]}
    (service_port,) = k8s_object("Service", "backoffice-web")["spec"]["ports"]

    assert int(exposed) == gunicorn_port
    assert compose_container_ports == {gunicorn_port}
    assert set(named_ports.values()) == {gunicorn_port}
    assert named_ports.get(service_port["targetPort"]) == gunicorn_port


def test_health_checks_call_the_port_gunicorn_listens_on(monkeypatch):
    (bind,) = load_gunicorn_conf(monkeypatch)["bind"]
    gunicorn_port = int(bind.rsplit(":", 1)[1])
    (healthcheck,) = instruction_values("HEALTHCHECK", final_stage())
    compose_test = compose_service("web")["healthcheck"]["test"]

    assert urlsplit(url_in(healthcheck)).port == gunicorn_port
    assert urlsplit(url_in(compose_test)).port == gunicorn_port


# --- Health probes --------------------------------------------------------------------------------


def test_kubernetes_probes_use_the_health_paths():
    container = web_container()
    named_ports = {port["name"] for port in container["ports"]}
    expected = {
        "startupProbe": LIVE_PATH,
        "livenessProbe": LIVE_PATH,
        "readinessProbe": READY_PATH,
    }
    for probe, path in expected.items():
        assert container[probe]["httpGet"]["path"] == path, probe
        assert container[probe]["httpGet"]["port"] in named_ports, probe


def test_docker_healthcheck_calls_the_liveness_path_with_python():
    (healthcheck,) = instruction_values("HEALTHCHECK", final_stage())
    command = exec_form(healthcheck.split(" CMD ", 1)[1])
    assert command[0] == "python", "slim images have no curl"
    assert urlsplit(url_in(command)).path == LIVE_PATH


def test_compose_web_healthcheck_calls_the_readiness_path():
    command = compose_service("web")["healthcheck"]["test"]
    assert command[:2] == ["CMD", "python"]
    assert urlsplit(url_in(command)).path == READY_PATH


@pytest.mark.parametrize("service", ["migrate", "worker"])
def test_containers_without_http_turn_off_the_image_healthcheck(service):
    assert compose_service(service)["healthcheck"] == {"disable": True}


# --- Commands -------------------------------------------------------------------------------------


def test_entrypoint_web_runs_gunicorn_with_the_config_and_the_wsgi_app():
    web = entrypoint_subcommands()["web"]
    assert "exec gunicorn" in web
    assert "-c deploy/gunicorn.conf.py" in web
    assert "backoffice.wsgi" in web
    assert "migrate" not in web, "replicas would race; the migrate service and Job do this"


def test_entrypoint_worker_runs_the_job_cluster():
    assert "python manage.py qcluster" in entrypoint_subcommands()["worker"]


def test_entrypoint_migrate_applies_migrations_without_prompting():
    assert "python manage.py migrate --noinput" in entrypoint_subcommands()["migrate"]


def test_entrypoint_is_strict_bash_and_executable():
    lines = ENTRYPOINT.read_text().splitlines()
    assert lines[0] in ("#!/usr/bin/env bash", "#!/bin/bash")
    assert "set -euo pipefail" in lines
    assert os.access(ENTRYPOINT, os.X_OK)


def test_every_role_started_by_compose_kubernetes_or_the_image_is_an_entrypoint_subcommand():
    subcommands = set(entrypoint_subcommands())
    roles = {"Dockerfile CMD": exec_form(instruction_values("CMD", final_stage())[-1])[0]}
    for name in APP_SERVICES:
        roles[f"compose {name}"] = compose_service(name)["command"][0]
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            roles[f"{name}/{container['name']}"] = container["args"][0]
    assert {where: role for where, role in roles.items() if role not in subcommands} == {}


def test_each_app_service_and_pod_runs_the_role_it_is_named_for():
    for name in APP_SERVICES:
        assert compose_service(name)["command"] == [name]
    assert {name: spec["containers"][0]["args"] for name, spec in pod_specs().items()} == {
        "backoffice-web": ["web"],
        "backoffice-worker": ["worker"],
        "backoffice-migrate": ["migrate"],
    }


def test_dockerfile_entrypoint_is_the_script_in_the_repository():
    stage = final_stage()
    (workdir,) = instruction_values("WORKDIR", stage)
    (entrypoint,) = instruction_values("ENTRYPOINT", stage)
    (path,) = exec_form(entrypoint)
    assert path.startswith(workdir.rstrip("/") + "/")
    script = ROOT / path.removeprefix(workdir.rstrip("/") + "/")
    assert script == ENTRYPOINT
    assert script.is_file()
    assert os.access(script, os.X_OK)


def test_image_runs_as_the_non_root_user_kubernetes_expects():
    (user,) = instruction_values("USER", final_stage())
    uid = user.split(":")[0]
    assert uid not in ("root", "0")
    for name, spec in pod_specs().items():
        assert str(spec["securityContext"]["runAsUser"]) == uid, name


def test_image_collects_static_files_with_throwaway_settings():
    instructions = dockerfile_instructions()
    runs = [run for run in instruction_values("RUN", final_stage()) if "collectstatic" in run]
    assert len(runs) == 1
    assert "collectstatic --noinput" in runs[0]
    # The key is given on the RUN line for that command alone...
    assert re.search(r"\bSECRET_KEY=\S+ .*python manage\.py collectstatic", runs[0])
    # ...and never persisted in the image.
    assert "SECRET_KEY" not in dockerfile_env(instructions)


def test_image_is_built_in_stages_on_python_311_slim():
    froms = instruction_values("FROM", dockerfile_instructions())
    assert len(froms) >= 2
    assert all(line.split()[0] == "python:3.11-slim" for line in froms)
    assert any(
        'pip install ".[redis]"' in run
        for run in instruction_values("RUN", dockerfile_instructions())
    )
    assert any(line.startswith("--from=") for line in instruction_values("COPY", final_stage()))


def test_build_context_leaves_out_tests_secrets_and_local_state():
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"tests", ".env", ".git", ".venv", "var", "staticfiles"} <= ignored


# --- Compose --------------------------------------------------------------------------------------


def test_web_and_worker_start_only_after_migrations_succeed():
    for name in ("web", "worker"):
        depends_on = compose_service(name)["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
    migrate_depends_on = compose_service("migrate")["depends_on"]
    assert migrate_depends_on == {
        "db": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_compose_app_services_share_one_environment():
    shared = compose()["x-app-env"]
    assert all(compose_service(name)["environment"] == shared for name in APP_SERVICES)


def test_compose_database_url_matches_the_db_service():
    db_env = compose_service("db")["environment"]
    url = urlsplit(compose()["x-app-env"]["DATABASE_URL"])
    assert (url.username, url.password, url.hostname, url.path.lstrip("/")) == (
        db_env["POSTGRES_USER"],
        db_env["POSTGRES_PASSWORD"],
        "db",
        db_env["POSTGRES_DB"],
    )


def test_web_and_worker_share_the_media_volume_under_data_dir():
    media_dir = dockerfile_env(final_stage())["DATA_DIR"].rstrip("/") + "/media"
    mounts = {name: set(compose_service(name)["volumes"]) for name in ("web", "worker")}
    assert mounts["web"] & mounts["worker"] == {f"media:{media_dir}"}


# --- gunicorn.conf.py -----------------------------------------------------------------------------


def test_gunicorn_conf_reads_port_and_concurrency_from_the_environment(monkeypatch):
    conf = load_gunicorn_conf(monkeypatch, PORT="9123", WEB_CONCURRENCY="3")
    assert conf["bind"] == ["0.0.0.0:9123"]
    assert conf["workers"] == 3


def test_gunicorn_conf_defaults(monkeypatch):
    conf = load_gunicorn_conf(monkeypatch)
    assert conf["bind"] == ["0.0.0.0:8000"]
    assert 1 <= conf["workers"] <= 8
    assert conf["worker_class"] == "sync"
    assert conf["timeout"] == 30
    assert conf["forwarded_allow_ips"] == "127.0.0.1"
    assert conf["preload_app"] is False
    # The app logs each request itself, with its request id.
    assert conf["accesslog"] is None
    assert conf["errorlog"] == "-"
    # The app user cannot write the socket's default place, its home /app.
    assert conf["control_socket_disable"] is True


def test_gunicorn_conf_rejects_a_worker_count_that_is_not_a_number(monkeypatch):
    with pytest.raises(ValueError, match="WEB_CONCURRENCY"):
        load_gunicorn_conf(monkeypatch, WEB_CONCURRENCY="many")


def test_kubernetes_gives_web_pods_longer_to_stop_than_gunicorn_needs(monkeypatch):
    graceful_timeout = load_gunicorn_conf(monkeypatch)["graceful_timeout"]
    web_spec = pod_specs()["backoffice-web"]
    assert web_spec["terminationGracePeriodSeconds"] > graceful_timeout


# --- Kubernetes -----------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_no_example():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    manifests = {
        path.name
        for path in K8S_DIR.glob("*.yaml")
        if path.name != "kustomization.yaml" and not path.name.endswith(".example.yaml")
    }
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    assert set(listed) == manifests
    # The example Secret holds placeholders: applying it would overwrite the real Secret.
    assert not [name for name in listed if name.endswith(".example.yaml")]


def test_kubernetes_pods_run_as_non_root_without_privilege_escalation():
    for name, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name


def test_kubernetes_pods_take_their_environment_from_the_configmap_and_secret():
    configmaps = {doc["metadata"]["name"] for doc in k8s_objects("ConfigMap")}
    secrets = {doc["metadata"]["name"] for doc in k8s_objects("Secret")}
    assert configmaps and secrets
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            sources = container["envFrom"]
            configmap_refs = {s["configMapRef"]["name"] for s in sources if "configMapRef" in s}
            secret_refs = {s["secretRef"]["name"] for s in sources if "secretRef" in s}
            assert configmap_refs == configmaps, name
            assert secret_refs == secrets, name


def test_kubernetes_containers_run_the_image_the_kustomization_sets():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    image_names = {image["name"] for image in kustomization["images"]}
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            assert container["image"].split(":")[0] in image_names, name


def test_web_service_selects_the_web_pods():
    service = k8s_object("Service", "backoffice-web")
    deployment = k8s_object("Deployment", "backoffice-web")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_worker_is_not_probed_over_http():
    (worker,) = pod_specs()["backoffice-worker"]["containers"]
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(worker)
    assert "ports" not in worker


def test_migrate_job_retries_a_few_times_then_fails():
    job = k8s_object("Job", "backoffice-migrate")
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
