"""Every service has the same inner layout (README "Architecture", docs/architecture.md), and no module in services/
or shared/ grows into several jobs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared.acls import SERVICES

ROOT = Path(__file__).resolve().parents[1]
EVERY_SERVICE = ("__init__.py", "__main__.py", "app.py", "settings.py", "deps.py", "consumers.py", "metrics.py")
LAYERS = {
    "HTTP": ("api.py", "routes"),
    "domain rules": ("domain.py", "domain"),
    "use cases": ("flows.py", "flows"),
    "SQL": ("store.py", "store"),
}
"""Each layer lives in the service's root or in its feature folders, under one of these names."""
FEATURE_FILES = {"__init__.py", "api.py", "schemas.py", "domain.py", "flows.py", "store.py", "settings.py"}
LONGEST = 450
ONE_CONCERN_BUT_LONG = {
    "services/ingest/niem.py": "NIEM XML parsing only: the element table and one reader per report type",
}


def feature_folders(service: Path) -> list[Path]:
    """Folders of a service that hold layers of their own (a feature such as storm holds or the hotline)."""
    return [
        folder
        for folder in sorted(service.iterdir())
        if folder.is_dir()
        and folder.name not in {name for names in LAYERS.values() for name in names}
        and any((folder / name).exists() for names in LAYERS.values() for name in names)
    ]


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_has_the_same_files_and_every_layer(name: str) -> None:
    service = ROOT / "services" / name
    assert [file for file in EVERY_SERVICE if not (service / file).is_file()] == []
    assert (service / "migrations").is_dir()
    places = [service, *feature_folders(service)]
    for layer, names in LAYERS.items():
        assert any((place / file).exists() for place in places for file in names), f"{name} has no {layer}"


@pytest.mark.parametrize("name", SERVICES)
def test_feature_folders_use_the_layer_names(name: str) -> None:
    for folder in feature_folders(ROOT / "services" / name):
        layered = {path.name for path in folder.glob("*.py")} & (FEATURE_FILES | {"routes.py"})
        assert "routes.py" not in layered, f"{folder}: the HTTP module of a feature folder is api.py"


@pytest.mark.parametrize("name", SERVICES)
def test_app_only_composes(name: str) -> None:
    """No SQL, no loops of its own and no handler bodies in app.py: it builds the app, the runtime and the routes."""
    source = (ROOT / "services" / name / "app.py").read_text()
    assert "SELECT " not in source, f"{name}/app.py holds SQL"
    assert "INSERT " not in source, f"{name}/app.py holds SQL"
    tree = ast.parse(source)
    loops = [node for node in ast.walk(tree) if isinstance(node, ast.While)]
    assert not loops, f"{name}/app.py runs a loop of its own (line {loops[0].lineno if loops else 0})"


def test_no_module_in_services_or_shared_does_several_jobs_at_length() -> None:
    long = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for folder in ("services", "shared", "cli")
        for path in (ROOT / folder).rglob("*.py")
        if len(path.read_text().splitlines()) > LONGEST
    }
    assert set(long) <= set(ONE_CONCERN_BUT_LONG), {k: v for k, v in long.items() if k not in ONE_CONCERN_BUT_LONG}


def test_shared_holds_only_what_services_import_at_run_time() -> None:
    """The local servers and fake providers live in deploy/local; nothing in shared/ imports them or the tests."""
    assert not (ROOT / "shared" / "devservers").exists()
    for path in (ROOT / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not [m for m in modules if m.split(".")[0] in {"devservers", "tests"}], path
