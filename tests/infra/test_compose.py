"""infra/compose.yaml: the services and how they connect.

No Docker engine runs here. With the compose plugin installed, `docker compose config`
parses and validates the file; the structural checks below run everywhere, reading the
file's blocks by indentation (PyYAML is not a dependency of the project).
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess

import pytest

from tests.infra.helpers import INFRA, load_infra_script

COMPOSE = INFRA / "compose.yaml"
SECRETS = {"POSTGRES_PASSWORD": "0123456789abcdef", "HITMAP_SECRET_KEY": "k" * 48}


def _blocks(text: str, indent: int) -> dict[str, str]:
    """Keys at exactly ``indent`` spaces, each with the lines indented deeper below it."""
    found: dict[str, str] = {}
    key: str | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        depth = len(line) - len(line.lstrip())
        match = re.fullmatch(r"([A-Za-z0-9_.-]+):(.*)", line.strip())
        if depth == indent and match:
            key = match[1]
            found[key] = match[2].strip() + "\n"
        elif depth < indent:
            key = None
        elif key is not None:
            found[key] += line + "\n"
    return found


@pytest.fixture(scope="module")
def services() -> dict[str, str]:
    top = _blocks(COMPOSE.read_text(), 0)
    return _blocks(top["services"], 2)


def test_the_topology_has_its_services(services):
    assert set(services) == {"postgres", "migrate", "web", "worker", "tls", "nginx"}
    assert "image: postgres:" in services["postgres"]
    assert "pg_isready" in services["postgres"]
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]
    for name in ("migrate", "web", "worker"):
        assert "<<: *hitmap" in services[name]
    assert 'command: ["hitmap", "migrate"]' in services["migrate"]
    assert 'command: ["hitmap", "serve"]' in services["web"]
    assert 'command: ["hitmap", "worker"]' in services["worker"]
    assert re.search(r"replicas: 2\b", services["web"])
    assert re.search(r"replicas: 2\b", services["worker"])


def test_start_order_follows_health_and_the_migration(services):
    def waits_for(service: str, other: str, condition: str) -> bool:
        depends_on = _blocks(services[service], 4)["depends_on"]
        return (
            re.search(rf"^ {{6}}{other}:\n {{8}}condition: {condition}$", depends_on, re.M)
            is not None
        )

    assert waits_for("migrate", "postgres", "service_healthy")
    assert waits_for("web", "migrate", "service_completed_successfully")
    assert waits_for("worker", "migrate", "service_completed_successfully")
    assert waits_for("nginx", "web", "service_healthy")
    assert waits_for("nginx", "tls", "service_completed_successfully")


def test_the_image_is_built_from_the_repository_with_infra_dockerfile():
    anchor = _blocks(COMPOSE.read_text(), 0)["x-hitmap"]
    assert re.search(r"context: \.\.\n", anchor)
    assert "dockerfile: infra/Dockerfile" in anchor
    assert (INFRA / "Dockerfile").is_file()


def test_only_nginx_is_a_trusted_proxy(services):
    web_env = dict(re.findall(r"^\s+(HITMAP_[A-Z_]+): (.+)$", services["web"], re.M))
    trusted = web_env["HITMAP_TRUSTED_PROXIES"]
    nginx_ip = re.search(r"ipv4_address: ([0-9.]+)", services["nginx"])
    subnet = re.search(r"subnet: ([0-9./]+)", COMPOSE.read_text())
    assert nginx_ip is not None and subnet is not None
    assert trusted == nginx_ip[1]
    assert ipaddress.ip_address(trusted) in ipaddress.ip_network(subnet[1])
    assert re.search(r"networks: \[front, back\]", services["web"])
    assert "8000:" not in services["web"]  # the web processes are not published


def test_nginx_gets_every_variable_of_the_template(services):
    render = load_infra_script("nginx/render")  # infra/nginx/render.py
    nginx = services["nginx"]
    mount = re.search(r"- \./(nginx/[^:]+):/etc/nginx/templates/default\.conf\.template:ro", nginx)
    assert mount is not None, "the template must replace the image's default.conf"
    assert (INFRA / mount[1]) == render.TEMPLATE
    env = dict(re.findall(r"^ {6}([A-Z_]+): (.+)$", nginx, re.M))
    # Compose fills ${VAR:-default} from the shell; the defaults stand in for it here.
    values = {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", v).strip('"') for k, v in env.items()}
    rendered = render.render(values)  # raises if the image would leave a ${...} behind
    assert "server web:8000;" in rendered
    assert "ssl_certificate /etc/nginx/tls/fullchain.pem;" in rendered


def test_docker_compose_config_accepts_the_file():
    try:
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no docker client on this machine")
    if plugin.returncode != 0:
        pytest.skip("the docker client has no compose plugin")
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**SECRETS, "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert set(config["services"]) == {"postgres", "migrate", "web", "worker", "tls", "nginx"}
    web = config["services"]["web"]
    assert web["environment"]["HITMAP_TRUSTED_PROXIES"] == "172.31.250.10"
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
