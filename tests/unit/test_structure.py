"""Imports go one way: orchestration -> assets -> llmhub (the domain core) -> ml.

Read from the source with ``ast`` (nothing is imported), so a violation fails here before it
becomes an import cycle or a Dagster dependency of the plain-Python layers. Imports inside
functions and under ``TYPE_CHECKING`` count: they are dependencies all the same.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestration", "assets", "llmhub", "ml")
# The one module that imports asset modules: it assembles the Definitions.
DEFINITIONS = "orchestration/definitions.py"
# What orchestration's jobs, schedules and sensors may import from assets: names, not assets
# (they select by group or key).
ORCHESTRATION_MAY_IMPORT = ("assets.groups",)
# Known violations to remove: the alert sensor selects by keys it imports from the asset package
# (importing assets.alerts loads its asset modules); the keys belong beside the group names.
ORCHESTRATION_IMPORTS_ALLOWED = {("orchestration/sensors.py", "assets.alerts")}
DAGSTER_PACKAGES = ("dagster", "dagster_dbt")

# Names the asset definitions and the jobs share (no Dagster code, by design).
NAMES_ONLY = {"assets/groups.py"}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imported(path: Path, root: Path = ROOT) -> Iterator[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against its
    package under ``root``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(root).parent.parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module
            # `from assets import groups` imports the module assets.groups.
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _violations(package: str, forbidden: set[str]) -> list[str]:
    return [
        f"{_rel(path)} imports {module}"
        for path in _modules(package)
        for module in imported(path)
        if _top(module) in forbidden
    ]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("ml", {"llmhub", "assets", "orchestration"}),
        ("llmhub", {"assets", "orchestration"}),
        ("assets", {"orchestration"}),
    ],
)
def test_no_upward_imports(package: str, forbidden: set[str]) -> None:
    assert _violations(package, forbidden) == []


def test_only_the_definitions_import_asset_modules() -> None:
    found = [
        f"{_rel(path)} imports {module}"
        for path in _modules("orchestration")
        if _rel(path) != DEFINITIONS
        for module in imported(path)
        if _top(module) == "assets"
        and module != "assets"
        and not any(module.startswith(allowed) for allowed in ORCHESTRATION_MAY_IMPORT)
        and not any(
            _rel(path) == where and (module == what or module.startswith(f"{what}."))
            for where, what in ORCHESTRATION_IMPORTS_ALLOWED
        )
    ]

    assert found == []


def test_modules_under_assets_hold_dagster_code() -> None:
    without = {
        _rel(path)
        for path in _modules("assets")
        if path.name != "__init__.py"
        and not any(_top(module) in DAGSTER_PACKAGES for module in imported(path))
    }

    assert without - NAMES_ONLY == set()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import orchestration.jobs\n", "orchestration.jobs"),
        ("from orchestration import definitions\n", "orchestration.definitions"),
        ("def f():\n    from assets.resources import HubResource\n", "assets.resources"),
        ("from . import sibling\n", "pkg.sub.sibling"),
        ("from ..other import thing\n", "pkg.other"),
    ],
)
def test_imports_are_found_wherever_they_are(tmp_path: Path, source: str, expected: str) -> None:
    path = tmp_path / "pkg" / "sub" / "module.py"
    path.parent.mkdir(parents=True)
    path.write_text(source)

    assert expected in set(imported(path, tmp_path))


# Where the environment is read: the hub's settings, and the Dagster code location's resolution
# of them (dg.EnvVar). assets/resources/dbt.py sets (not reads) variables for the dbt CLI process.
ENVIRONMENT_READERS = {
    "llmhub/config.py",
    "assets/resources/env.py",
    "assets/resources/dbt.py",
    # Alert channel secrets are references (env:NAME) resolved when a notification is sent, so a
    # rotated secret needs no restart and never sits in Settings.
    "llmhub/alerts/channels.py",
    # Sets the demo receivers' secret references for its own process (writes, not config).
    "llmhub/alerts/demo.py",
}


def _reads_environment(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                return True
    return False


def test_the_environment_is_read_in_one_module() -> None:
    readers = {
        _rel(path) for package in PACKAGES for path in _modules(package) if _reads_environment(path)
    }

    assert readers - ENVIRONMENT_READERS == set()
