"""The dbt project of the hub, and how the dbt CLI reaches the hub database.

One ``DbtProject`` for the code location, described here and prepared (parsed) once, where the
Definitions are built (``orchestration/definitions.py`` calls ``prepare`` and hands the project to
``assets.transform.dbt_models.dbt_model_assets``): importing this module or any asset module never
starts dbt. Its manifest is what ``@dbt_assets`` is built from, so it must exist before those
assets are defined: under ``dagster dev`` the project is re-parsed on every load (what
``DbtProject.prepare_if_dev`` does), and anywhere else (a fresh clone in CI, pytest, a deployed code
server) when the manifest is missing or older than a file of the project. Parsing needs no
database; a file lock makes concurrent loads (code server, run worker, step processes) parse once.

``prepare_if_dev`` itself is not called: dagster-dbt's preparer starts ``dbt`` from ``PATH``, and
the Makefile runs ``.venv/bin/dagster`` and ``.venv/bin/pytest`` without activating the
environment, so ``dbt`` is not on it. Everything here starts the environment's own ``dbt``.

The dbt profile (``dbt_project/profiles.yml``) reads ``LLMHUB_DB_HOST/PORT/USER/PASSWORD/NAME``.
Those are derived here from the hub's one database URL, so ``LLMHUB_DATABASE_URL`` is the only
variable a user sets and dbt always builds in the database the rest of the hub reads.
"""

import fcntl
import getpass
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psycopg
from dagster_dbt import DbtCliResource, DbtProject
from psycopg.conninfo import conninfo_to_dict

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
# The dbt of this interpreter's environment (matching its dbt-core and adapter), else PATH's.
_ENV_DBT = Path(sys.executable).with_name("dbt")
DBT_EXECUTABLE = os.fspath(_ENV_DBT) if _ENV_DBT.exists() else shutil.which("dbt") or "dbt"
DEFAULT_PORT = "5432"
# Run the tests whose parents are all selected or upstream of the selection: the hourly build
# does not test daily marts it did not build merely because they reference dim_assets (dbt's
# default, eager, would), and the daily build still runs their relationship tests to dim_assets.
DBT_INDIRECT_SELECTION = "buildable"
# dbt's partial parsing state, kept beside the manifest.
PARTIAL_PARSE = "partial_parse.msgpack"
# Everything dbt reads to build the manifest; a newer file means the manifest is stale.
PROJECT_PATHS = ("dbt_project.yml", "models", "macros", "seeds", "snapshots", "tests", "analyses")

_environ_lock = threading.Lock()


def profile_env(database_url: str) -> dict[str, str]:
    """The ``LLMHUB_DB_*`` variables of the dbt profile for ``database_url``.

    The URL is parsed by psycopg, the parser ``HubResource.connect`` uses, so dbt reaches the same
    server: percent-encoded passwords are decoded and ``?host=/socket/dir`` style parameters
    honoured. Omitted parts take libpq's defaults (port 5432, the OS user, database = user, no
    password).

    Args:
        database_url: a ``postgresql://`` URL or libpq keyword/value string.

    Returns:
        ``LLMHUB_DB_HOST``, ``_PORT``, ``_USER``, ``_PASSWORD`` and ``_NAME``, always all five, so
        stale values in the process environment never leak into the profile.

    Raises:
        ValueError: the URL names no host or several (dbt-postgres connects to exactly one).
    """
    try:
        params = conninfo_to_dict(database_url)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"not a PostgreSQL connection URL: {exc}") from None
    host = params.get("host") or params.get("hostaddr")
    if not host:
        raise ValueError("the database URL must name a host for dbt (e.g. postgresql://u@h/db)")
    if "," in str(host):
        raise ValueError(f"dbt connects to one host; the database URL names several: {host}")
    user = str(params.get("user") or getpass.getuser())
    return {
        "LLMHUB_DB_HOST": str(host),
        "LLMHUB_DB_PORT": str(params.get("port") or DEFAULT_PORT),
        "LLMHUB_DB_USER": user,
        "LLMHUB_DB_PASSWORD": str(params.get("password") or ""),
        "LLMHUB_DB_NAME": str(params.get("dbname") or user),
    }


def dbt_cli_env(database_url: str) -> dict[str, str]:
    """Environment of a dbt invocation against ``database_url``: the profile variables and the
    project's indirect test selection."""
    return {**profile_env(database_url), "DBT_INDIRECT_SELECTION": DBT_INDIRECT_SELECTION}


@contextmanager
def dbt_cli_environ(database_url: str) -> Iterator[None]:
    """Apply ``dbt_cli_env(database_url)`` to ``os.environ`` while a dbt CLI process is started.

    dagster-dbt 0.29's ``DbtCliResource.cli`` builds the subprocess environment (and its
    in-process adapter) from ``os.environ`` and takes no ``env`` argument, so the variables are
    set for the duration of the ``cli(...)`` call, which starts the process, and restored after.
    Steps run in their own processes (or one after another in-process), and the lock serialises
    the rare concurrent callers in one process.
    """
    with _environ_lock, _patched_environ(dbt_cli_env(database_url)):
        yield


@contextmanager
def _patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def manifest_is_stale(project_dir: Path, manifest_path: Path) -> bool:
    """True when ``manifest_path`` is missing or older than a file dbt parses in the project."""
    if not manifest_path.exists():
        return True
    built = manifest_path.stat().st_mtime
    for name in PROJECT_PATHS:
        path = project_dir / name
        candidates = [path] if path.is_file() else path.rglob("*") if path.is_dir() else []
        if any(p.is_file() and p.stat().st_mtime > built for p in candidates):
            return True
    return False


def prepare(project: DbtProject) -> DbtProject:
    """Make ``project.manifest_path`` loadable: re-parse under ``dagster dev`` (as
    ``prepare_if_dev`` would), else parse only when the manifest is missing or stale (a fresh
    clone has no ``target/``).

    dbt parses into a directory of its own and the manifest is moved into place with one
    ``os.replace``: a process loading the Definitions meanwhile (a ``dagster dev`` reload, a test
    run beside it) reads the old manifest or the new one, never a half-written file.
    """
    project_dir, manifest = Path(project.project_dir), Path(project.manifest_path)
    always = project.preparer.using_dagster_dev()
    if not (always or manifest_is_stale(project_dir, manifest)):
        return project
    seen = manifest.stat().st_mtime if manifest.exists() else None
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with manifest.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Another process may have parsed while this one waited for the lock.
        current = manifest.stat().st_mtime if manifest.exists() else None
        if current == seen and (always or manifest_is_stale(project_dir, manifest)):
            _parse_into_place(project, manifest)
    return project


def _parse_into_place(project: DbtProject, manifest: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="parse-", dir=manifest.parent) as scratch:
        work = Path(scratch)
        # dbt's partial parsing state, so a re-parse reads only what changed.
        state = manifest.parent / PARTIAL_PARSE
        if state.exists():
            shutil.copy2(state, work / PARTIAL_PARSE)
        dbt_cli_resource(project).cli(["parse", "--quiet"], target_path=work).wait()
        if (work / PARTIAL_PARSE).exists():
            os.replace(work / PARTIAL_PARSE, state)
        os.replace(work / manifest.name, manifest)


def dbt_cli_resource(project: DbtProject) -> DbtCliResource:
    """The dbt CLI resource of ``project``, starting this environment's ``dbt``."""
    return DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE)


dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
"""The project, not yet prepared: call ``prepare(dbt_project)`` before reading its manifest."""
