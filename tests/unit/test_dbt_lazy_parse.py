"""The dbt project is parsed where the Definitions are built, never by importing a module."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from assets.resources import dbt as dbt_resource

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "module", ["assets.resources", "assets.resources.dbt", "assets.transform", "assets"]
)
def test_importing_the_resources_and_dbt_assets_starts_no_dbt(module: str) -> None:
    # Regression: assets.resources.dbt ran `dbt parse` at import, so every module that imported
    # a resource (and every test collecting one) started dbt and took its file lock.
    # dbt is refused before any module of ours is imported: by the resource that starts the
    # CLI, dagster-dbt's own preparer, and any subprocess naming dbt.
    probe = (
        "import subprocess, dagster_dbt\n"
        "def refuse(*a, **k): raise SystemExit('dbt started at import')\n"
        "dagster_dbt.DbtCliResource.cli = refuse\n"
        "dagster_dbt.DbtProject.prepare_if_dev = refuse\n"
        "popen = subprocess.Popen.__init__\n"
        "def guarded(self, args, *a, **k):\n"
        "    if 'dbt' in str(args): refuse()\n"
        "    popen(self, args, *a, **k)\n"
        "subprocess.Popen.__init__ = guarded\n"
        f"import {module}\n"
    )
    # Under `dagster dev` a prepared project re-parses on every load, whatever the manifest's age.
    env = {**os.environ, "DAGSTER_IS_DEV_CLI": "1"}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def test_the_definitions_prepare_the_project_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = dbt_resource.prepare

    def counting(project):
        calls.append(project)
        return real(project)

    monkeypatch.setattr(dbt_resource, "prepare", counting)
    monkeypatch.delitem(sys.modules, "orchestration.definitions", raising=False)
    import orchestration.definitions  # noqa: F401

    assert calls == [dbt_resource.dbt_project]
