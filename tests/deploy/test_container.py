"""The Dockerfile and the compose files, checked as far as tools from the registries go without docker.

The Dockerfile is parsed by ``dockerfile-parse`` (the instructions, not a build: no daemon here).
The compose files are validated against the Compose Specification's JSON schema that
``check-jsonschema`` ships, and by ``docker-compose config`` (Debian's ``docker-compose``) when
it is installed. Both are compared with the Procfile, so a process added there is not forgotten.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.servers import REPO_ROOT

BIN = Path(sys.executable).parent
COMPOSE_FILES = ("compose.yaml", "compose.gpu.yaml")


def procfile() -> dict[str, list[str]]:
    """Each Procfile process -> the ``framequeue`` arguments it runs with."""
    processes = {}
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            words = shlex.split(re.sub(r"\$\{PORT:-(\d+)\}", r"\1", command))
            assert words[0] == "framequeue", line
            processes[name.strip()] = words[1:]
    return processes


def instructions() -> list[dict[str, Any]]:
    parser = DockerfileParser(path=str(REPO_ROOT / "Dockerfile"))
    return [step for step in parser.structure if step["instruction"] != "COMMENT"]


def compose(*files: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in files:
        for service, config in yaml.safe_load((REPO_ROOT / name).read_text())["services"].items():
            merged.setdefault(service, {}).update(config)
    return merged


def test_the_image_installs_the_pinned_cpu_torch_before_the_project_and_runs_framequeue_as_a_user() -> None:
    steps = instructions()
    runs = [step["value"] for step in steps if step["instruction"] == "RUN"]
    torch_step = next(i for i, run in enumerate(runs) if "torch==" in run)
    project_step = next(i for i, run in enumerate(runs) if re.search(r"pip install \.(\s|$)", run))
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    [torch_pin] = [dep for dep in pyproject["project"]["dependencies"] if dep.startswith("torch==")]
    args = {step["value"].split("=", 1)[0]: step["value"].split("=", 1)[1] for step in steps
            if step["instruction"] == "ARG" and "=" in step["value"]}

    assert torch_step < project_step
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in runs[torch_step]
    assert (args["TORCH_VARIANT"], f"torch=={args['TORCH_VERSION']}") == ("cpu", torch_pin)
    [base] = [step["value"] for step in steps if step["instruction"] == "FROM"]
    assert base.startswith("python:") and "-slim" in base
    [user] = [step["value"] for step in steps if step["instruction"] == "USER"]
    assert user not in ("root", "0")
    [entrypoint] = [step["value"] for step in steps if step["instruction"] == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["framequeue"]


def test_every_copy_source_exists_and_the_packages_the_project_installs_are_copied() -> None:
    copies = [shlex.split(step["value"]) for step in instructions() if step["instruction"] == "COPY"]
    sources = [source for words in copies for source in words[:-1] if not source.startswith("--")]
    ignored = [line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    packages = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]

    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert source not in ignored, source
    for pattern in packages["include"]:
        assert pattern.rstrip("*") in sources, pattern
    assert "README.md" in sources  # pyproject.toml names it as the readme: the build reads it


def test_the_copied_sources_alone_build_the_package_with_its_templates_and_scripts(tmp_path: Path) -> None:
    """What ``pip install .`` in the image builds from: only the COPY sources, nothing else of the checkout."""
    copies = [shlex.split(step["value"]) for step in instructions() if step["instruction"] == "COPY"]
    for *sources, destination in copies:
        for source in sources:
            target = tmp_path / "app" / destination
            target = target / Path(source).name if destination.endswith("/") else target
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO_ROOT / source).is_dir():
                shutil.copytree(REPO_ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(REPO_ROOT / source, target)

    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir",
               str(tmp_path / "wheel"), str(tmp_path / "app")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    [built] = (tmp_path / "wheel").glob("framequeue-*.whl")
    names = zipfile.ZipFile(built).namelist()
    assert "workers/api/templates/overview.html" in names
    assert "workers/jobs/transition.lua" in names
    assert "workers/cli/__init__.py" in names and "pipelines/__init__.py" in names


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_the_compose_files_follow_the_compose_specification(name: str) -> None:
    result = subprocess.run([BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", REPO_ROOT / name],
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed (apt-get install "
                    "docker-compose); the compose-spec schema check above still runs")
def test_docker_compose_accepts_both_files_together(tmp_path: Path) -> None:
    for name in COMPOSE_FILES:
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copy(REPO_ROOT / "compose.env.example", tmp_path / "compose.env")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")

    result = subprocess.run(["docker-compose", "-f", "compose.yaml", "-f", "compose.gpu.yaml", "config"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["gpu_worker"]["image"] == "framequeue:cuda"
    assert services["cpu_worker"]["image"] == "framequeue:cpu"


def test_compose_runs_every_procfile_process_with_redis_aof_and_a_bucket_made_first() -> None:
    services = compose("compose.yaml")

    for name, args in procfile().items():
        assert services[name]["command"] == args, name
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully"
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert {"redis", "minio", "api"} <= {name for name, service in services.items() if "healthcheck" in service}
    assert "mc mb" in " ".join(services["minio-bucket"]["command"])


def test_the_gpu_override_gives_only_the_gpu_worker_the_cuda_image_and_a_gpu() -> None:
    merged, override = compose(*COMPOSE_FILES), compose("compose.gpu.yaml")

    assert set(override) == {"gpu_worker"}
    assert merged["gpu_worker"]["build"]["args"]["TORCH_VARIANT"].startswith("cu")
    [device] = merged["gpu_worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]


def test_the_env_example_names_only_known_settings_and_holds_no_secret() -> None:
    from queue_config.settings import Settings

    known = {f"FRAMEQUEUE_{name.upper()}" for name in Settings.model_fields}
    others = {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    pairs = [line.split("=", 1) for line in (REPO_ROOT / "compose.env.example").read_text().splitlines()
             if line and not line.startswith("#")]

    for name, value in pairs:
        assert name in known | others, name
        if any(word in name for word in ("TOKEN", "SECRET", "PASSWORD")):
            assert value == "", f"{name} must be left for the operator to fill in"
