"""infra/systemd: the units pass systemd's own checks and say what the deployment needs.

systemd does not run as PID 1 here, so the units cannot be started; `systemd-analyze
verify` and `systemd-analyze security --offline` check them as files, with the
ExecStart binary pointed at this checkout's `hitmap` (verify insists that it exists).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from app.settings import load_settings
from tests.infra.helpers import INFRA, ROOT

UNITS = INFRA / "systemd"
SERVICES = sorted(p.name for p in UNITS.glob("*.service"))
INSTALLED_BINARY = "/opt/hitmap/bin/hitmap"
VENV_BINARY = Path(sys.executable).parent / "hitmap"
HARDENING = {
    "NoNewPrivileges",
    "CapabilityBoundingSet",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "RestrictAddressFamilies",
    "SystemCallArchitectures",
    "SystemCallFilter",
    "SystemCallErrorNumber",
    "RemoveIPC",
    "PrivateMounts",
    "UMask",
}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values in order]}}: systemd allows a key more than once."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    return parse_unit((UNITS / name).read_text(encoding="utf-8"))


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"{key}: expected one value, got {values}"
    return values[0]


def words(section: dict[str, list[str]], key: str) -> set[str]:
    return {w for value in section.get(key, []) for w in value.split()}


def test_the_expected_units_exist():
    assert SERVICES == [
        "hitmap-migrate.service",
        "hitmap-web.service",
        "hitmap-web@.service",
        "hitmap-worker@.service",
    ]
    assert (UNITS / "hitmap.target").is_file() and (UNITS / "hitmap.env.example").is_file()


def test_parser_keeps_repeated_keys():
    parsed = parse_unit("[Service]\n# c\nA=1\nA=2 3\n[Install]\nWantedBy=x\n")
    assert parsed == {"Service": {"A": ["1", "2 3"]}, "Install": {"WantedBy": ["x"]}}


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_runs_unprivileged_and_hardened(name):
    service = unit(name)["Service"]
    assert one(service, "User") == one(service, "Group") == "hitmap"
    assert one(service, "EnvironmentFile") == "/etc/hitmap/hitmap.env"
    assert one(service, "NoNewPrivileges") == "yes"
    assert one(service, "ProtectSystem") == "strict"
    assert one(service, "PrivateTmp") == "yes"
    assert one(service, "CapabilityBoundingSet") == ""
    # The data dir is the one place it writes: StateDirectory makes it writable under
    # ProtectSystem=strict and owned by User=; HITMAP_DATA_DIR defaults to it.
    assert one(service, "StateDirectory") == "hitmap"
    assert "HITMAP_DATA_DIR=%S/hitmap" in words(service, "Environment")
    assert one(service, "ExecStart").startswith(INSTALLED_BINARY + " ")


def test_hardening_is_the_same_in_every_service():
    blocks = {
        name: {k: v for k, v in unit(name)["Service"].items() if k in HARDENING}
        for name in SERVICES
    }
    first = blocks[SERVICES[0]]
    assert set(first) == HARDENING
    assert all(block == first for block in blocks.values()), blocks


def _graceful_shutdown_seconds() -> int:
    match = re.search(
        r"timeout_graceful_shutdown=(\d+)", (ROOT / "app" / "cli" / "server.py").read_text()
    )
    assert match is not None, "hitmap serve no longer sets timeout_graceful_shutdown"
    return int(match[1])


@pytest.mark.parametrize("name", ["hitmap-web.service", "hitmap-web@.service"])
def test_web_stops_gracefully_and_restarts(name):
    parsed = unit(name)
    service = parsed["Service"]
    assert one(service, "KillSignal") == "SIGTERM"
    assert one(service, "KillMode") == "mixed"  # the supervisor stops its workers itself
    # uvicorn's graceful shutdown, then the writer's flush or spool: before any SIGKILL.
    assert int(one(service, "TimeoutStopSec")) >= _graceful_shutdown_seconds() + 15
    assert one(service, "Restart") == "on-failure"
    assert one(service, "Type") == "exec"
    assert "hitmap-migrate.service" in words(parsed["Unit"], "Wants")
    assert "hitmap-migrate.service" in words(parsed["Unit"], "After")
    assert one(parsed["Unit"], "PartOf") == "hitmap.target"
    assert one(parsed["Install"], "WantedBy") == "hitmap.target"


def test_web_template_takes_its_port_from_the_instance():
    service = unit("hitmap-web@.service")["Service"]
    # A command-line option: HITMAP_PORT in the environment file would override Environment=.
    assert one(service, "ExecStart") == f"{INSTALLED_BINARY} serve --port %i"
    assert not any(w.startswith("HITMAP_PORT=") for w in words(service, "Environment"))
    assert one(unit("hitmap-web.service")["Service"], "ExecStart") == f"{INSTALLED_BINARY} serve"


def test_worker_template_and_migration():
    worker = unit("hitmap-worker@.service")
    assert one(worker["Service"], "ExecStart") == f"{INSTALLED_BINARY} worker --name %H-%i"
    assert one(worker["Service"], "KillSignal") == "SIGTERM"
    assert one(worker["Service"], "Restart") == "on-failure"
    assert "hitmap-migrate.service" in words(worker["Unit"], "After")
    assert one(worker["Install"], "WantedBy") == "hitmap.target"

    migrate = unit("hitmap-migrate.service")
    assert one(migrate["Service"], "Type") == "oneshot"
    assert one(migrate["Service"], "ExecStart") == f"{INSTALLED_BINARY} migrate"
    # Not RemainAfterExit: every (re)start of a web server or worker migrates first.
    assert "RemainAfterExit" not in migrate["Service"]
    target = unit("hitmap.target")
    assert one(target["Install"], "WantedBy") == "multi-user.target"


@pytest.mark.parametrize("name", SERVICES)
def test_exec_start_is_a_valid_hitmap_command_line(name):
    command = one(unit(name)["Service"], "ExecStart")
    instance = {"%i": "8001", "%H": socket.gethostname()}
    args = re.sub(r"%[iH]", lambda m: instance[m.group(0)], command).split()[1:]
    parent = main.make_context("hitmap", list(args), resilient_parsing=False)
    sub = main.get_command(parent, args[0])
    assert sub is not None, f"{command}: no such hitmap command"
    ctx = sub.make_context(args[0], args[1:], parent=parent)  # raises on a bad option
    if "--port" in args:
        assert ctx.params["port"] == 8001


# --------------------------------------------------------------------------- systemd-analyze


def _analyze_copies(tmp_path: Path) -> Path:
    """The units with ExecStart pointing at this checkout's hitmap (verify wants it to exist)."""
    assert VENV_BINARY.is_file(), f"{VENV_BINARY} missing: install the project in the venv"
    folder = tmp_path / "units"
    folder.mkdir()
    for path in UNITS.iterdir():
        if path.suffix in (".service", ".target"):
            text = path.read_text(encoding="utf-8").replace(INSTALLED_BINARY, str(VENV_BINARY))
            (folder / path.name).write_text(text, encoding="utf-8")
    return folder


def _verify(folder: Path) -> subprocess.CompletedProcess[str]:
    names = [
        "hitmap-migrate.service",
        "hitmap-web.service",
        "hitmap-web@8001.service",
        "hitmap-worker@1.service",
        "hitmap.target",
    ]
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )


needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@needs_analyze
def test_systemd_analyze_verify_finds_nothing(tmp_path):
    done = _verify(_analyze_copies(tmp_path))
    # verify exits 0 on unknown keys and unparsable values: any message is a finding.
    assert done.returncode == 0 and (done.stdout + done.stderr).strip() == "", (
        done.stdout + done.stderr
    )


@needs_analyze
def test_systemd_analyze_verify_would_report_a_mistake(tmp_path):
    folder = _analyze_copies(tmp_path)
    web = folder / "hitmap-web.service"
    web.write_text(web.read_text().replace("ProtectSystem=", "ProtectSytem="))
    done = _verify(folder)
    assert "Unknown key 'ProtectSytem'" in done.stdout + done.stderr


@needs_analyze
@pytest.mark.parametrize(
    "name", ["hitmap-migrate.service", "hitmap-web.service", "hitmap-worker@1.service"]
)
def test_exposure_is_rated_ok(tmp_path, name):
    folder = _analyze_copies(tmp_path)
    done = subprocess.run(
        # Exposure ×10: at most 2.0 ("OK" is below 3.0 on systemd's 0-10 scale).
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", "--no-pager", name],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "--offline" in done.stderr and "unrecognized" in done.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    assert re.search(r"Overall exposure level for \S+: [0-2]\.\d OK", done.stdout)


# --------------------------------------------------------------------------- environment file


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"bad line: {line}"
            values[key] = value
    return values


def test_environment_example_holds_valid_production_settings(monkeypatch):
    values = read_env_file(UNITS / "hitmap.env.example")
    for key in [k for k in os.environ if k.startswith("HITMAP_")]:
        monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    known = {"HITMAP_" + name.upper() for name in type(settings).model_fields}
    assert set(values) <= known, f"not settings: {set(values) - known}"
    assert settings.production and settings.base_url.startswith("https://")
    assert settings.database_url is not None and settings.database_url.startswith("postgresql")
    assert str(settings.data_dir) == "/var/lib/" + one(
        unit("hitmap-web.service")["Service"], "StateDirectory"
    )
    assert settings.host == "127.0.0.1"  # behind nginx on the same host
    assert {str(n) for n in settings.trusted_networks} == {"127.0.0.1/32", "::1/128"}
