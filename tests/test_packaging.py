"""The production wheel and image hold the services, their runtime library and the operator CLI: no local server,
no fake provider and no test. The image cannot be built here (no Docker engine), so its production stage is read
from the Dockerfile, and the wheel is built from exactly what that stage copies."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
IMPORTS_DEV_ONLY = re.compile(rb"^\s*(from|import)\s+(devservers|tests)\b", re.MULTILINE)
DEV_ONLY = re.compile(r"\b(devservers|tests)\b|/sinks/|sink", re.IGNORECASE)
"""A path or an import that belongs to the local servers, the fake providers or the tests."""


def stages() -> dict[str, list[str]]:
    """Each stage of the Dockerfile and its instructions (continuation lines joined)."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in DOCKERFILE.read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = found.setdefault(match.group(2) or match.group(1), [f"FROM {match.group(1)}"])
            continue
        current.append(line)
    return found


def production_sources() -> list[str]:
    """What the image that is deployed copies from the build context: its own stage and every stage it is built on."""
    all_stages, sources = stages(), []
    name: str | None = list(all_stages)[-1]  # docker builds the last stage unless told otherwise
    assert name == "production", "the default target must be the production image"
    while name in all_stages:
        instructions = all_stages[name]
        for line in instructions:
            if line.upper().startswith("COPY") and "--from" not in line:
                sources += line.split()[1:-1]
        name = instructions[0].split()[1]
    return sources


def test_the_production_image_copies_no_local_server_fake_provider_or_test() -> None:
    sources = production_sources()
    assert {"shared", "services", "cli", "pyproject.toml"} <= set(sources)
    assert not [source for source in sources if source.startswith("deploy") or DEV_ONLY.search(source)]


@pytest.mark.timeout(300)
def test_the_wheel_holds_the_services_and_nothing_of_the_local_tooling(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for source in production_sources():
        origin = ROOT / source
        target = context / source
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    built = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(built), "."],  # as the image builds it
        cwd=context,
        check=True,
        capture_output=True,
    )
    (wheel,) = built.glob("custody_watch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"cli", "services", "shared"}
    assert any(name.startswith("services/delivery/templates/") for name in names)
    assert not [name for name in names if DEV_ONLY.search(name)]
    with zipfile.ZipFile(wheel) as archive:
        importing = [name for name in names if name.endswith(".py") and IMPORTS_DEV_ONLY.search(archive.read(name))]
    assert not importing, f"production modules import the local tooling or the tests: {importing}"
