"""The dbt profile environment derived from the hub URL, and when the manifest is re-parsed."""

import os
import time
from pathlib import Path

import pytest

from assets.resources.dbt import (
    DBT_INDIRECT_SELECTION,
    dbt_cli_env,
    dbt_cli_environ,
    manifest_is_stale,
    profile_env,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:5433/llmhub",
            ("127.0.0.1", "5433", "postgres", "", "llmhub"),
        ),
        # No port: libpq's default, not the profile's 5433.
        (
            "postgresql://hub:secret@db.internal/llmhub",
            ("db.internal", "5432", "hub", "secret", "llmhub"),
        ),
        # Percent-encoded password: dbt must get the decoded one.
        (
            "postgres://hub:p%40ss%3Aw%2Fd@db.internal:6432/hub?sslmode=require",
            ("db.internal", "6432", "hub", "p@ss:w/d", "hub"),
        ),
        ("postgresql://hub@[::1]:5433/x", ("::1", "5433", "hub", "", "x")),
        # Unix socket directory as a parameter; no database: libpq uses the user name.
        (
            "postgresql://hub@/?host=/var/run/postgresql",
            ("/var/run/postgresql", "5432", "hub", "", "hub"),
        ),
        ("host=db port=5 user=u password='a b' dbname=d", ("db", "5", "u", "a b", "d")),
    ],
)
def test_profile_env_from_the_hub_url(url: str, expected: tuple[str, ...]) -> None:
    env = profile_env(url)

    assert (
        env["LLMHUB_DB_HOST"],
        env["LLMHUB_DB_PORT"],
        env["LLMHUB_DB_USER"],
        env["LLMHUB_DB_PASSWORD"],
        env["LLMHUB_DB_NAME"],
    ) == expected


def test_profile_env_without_a_user_takes_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "alice")

    env = profile_env("postgresql://db.internal")

    assert (env["LLMHUB_DB_USER"], env["LLMHUB_DB_NAME"]) == ("alice", "alice")


@pytest.mark.parametrize(
    "url",
    ["postgresql:///llmhub", "postgresql://a:1,b:2/llmhub", "not a url at all"],
    ids=["no host", "several hosts", "garbage"],
)
def test_profile_env_refuses_urls_dbt_cannot_use(url: str) -> None:
    with pytest.raises(ValueError):
        profile_env(url)


def test_dbt_cli_env_adds_the_indirect_selection() -> None:
    env = dbt_cli_env("postgresql://postgres@127.0.0.1:5433/llmhub")

    assert env["DBT_INDIRECT_SELECTION"] == DBT_INDIRECT_SELECTION == "buildable"


def test_dbt_cli_environ_applies_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMHUB_DB_NAME", "stale")
    monkeypatch.delenv("LLMHUB_DB_PASSWORD", raising=False)

    with dbt_cli_environ("postgresql://u:pw@h:1/fresh"):
        assert os.environ["LLMHUB_DB_NAME"] == "fresh"
        assert os.environ["LLMHUB_DB_PASSWORD"] == "pw"

    assert os.environ["LLMHUB_DB_NAME"] == "stale"
    assert "LLMHUB_DB_PASSWORD" not in os.environ


def test_dbt_cli_environ_restores_after_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMHUB_DB_HOST", raising=False)

    with pytest.raises(RuntimeError), dbt_cli_environ("postgresql://u@h/d"):
        raise RuntimeError("dbt failed to start")

    assert "LLMHUB_DB_HOST" not in os.environ


def _project(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "models" / "marts").mkdir(parents=True)
    (tmp_path / "dbt_project.yml").write_text("name: x\n")
    (tmp_path / "models" / "marts" / "m.sql").write_text("select 1\n")
    return tmp_path, tmp_path / "target" / "manifest.json"


def _touch(path: Path, at: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, (at, at))


def test_a_missing_manifest_is_stale(tmp_path: Path) -> None:
    # A fresh clone (CI) has no target/: the definitions must parse before loading.
    project, manifest = _project(tmp_path)

    assert manifest_is_stale(project, manifest)


def test_a_manifest_newer_than_every_file_is_current(tmp_path: Path) -> None:
    project, manifest = _project(tmp_path)
    _touch(manifest, time.time() + 60)

    assert not manifest_is_stale(project, manifest)


@pytest.mark.parametrize("changed", ["dbt_project.yml", "models/marts/m.sql", "macros/new.sql"])
def test_a_project_file_newer_than_the_manifest_makes_it_stale(
    tmp_path: Path, changed: str
) -> None:
    project, manifest = _project(tmp_path)
    now = time.time()
    _touch(manifest, now - 60)
    _touch(project / changed, now)

    assert manifest_is_stale(project, manifest)


def test_files_outside_the_project_paths_do_not_count(tmp_path: Path) -> None:
    project, manifest = _project(tmp_path)
    now = time.time()
    for path in (project / "dbt_project.yml", project / "models" / "marts" / "m.sql"):
        os.utime(path, (now - 120, now - 120))
    _touch(manifest, now - 60)
    _touch(project / "target" / "run_results.json", now)
    _touch(project / "logs" / "dbt.log", now)

    assert not manifest_is_stale(project, manifest)


class _FakeDbt:
    """Stands in for the dbt CLI: `parse` writes a manifest into the given target path."""

    def __init__(self, seen: list[Path]) -> None:
        self.seen = seen

    def cli(self, args: list[str], target_path: Path) -> "_FakeDbt":
        self.seen.append(target_path)
        (target_path / "manifest.json").write_text('{"nodes": {}}')
        (target_path / "partial_parse.msgpack").write_bytes(b"state")
        return self

    def wait(self) -> None:
        return None


def test_the_manifest_is_parsed_aside_and_moved_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: dbt wrote target/manifest.json in place, so a process loading the Definitions
    # meanwhile (dagster dev beside a test run) could read half a file.
    from dagster_dbt import DbtProject

    from assets.resources import dbt as dbt_resource

    project_dir, manifest = _project(tmp_path)
    seen: list[Path] = []
    monkeypatch.setattr(dbt_resource, "dbt_cli_resource", lambda _project: _FakeDbt(seen))
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)

    dbt_resource.prepare(project)

    assert manifest.read_text() == '{"nodes": {}}'
    assert (manifest.parent / "partial_parse.msgpack").read_bytes() == b"state"
    assert len(seen) == 1 and seen[0] != manifest.parent
    assert not seen[0].exists()  # the scratch directory is gone
