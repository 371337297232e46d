"""SHA-256 of every file of a registered model: recorded at registration, checked before loading.

Whoever can write to the MLflow artifact store could otherwise swap a model's files; the digests
live on the model version (registry tags, in the tracking database), a separate trust boundary.
A file changed, added or removed since registration makes ``verify_tree`` raise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

#: Model version tag prefix: ``sha256/<path inside the model directory>`` = hex digest.
TAG_PREFIX = "sha256/"
_CHUNK = 1 << 20
#: Written by the MLflow client into a downloaded registered model (its name and version);
#: not part of the model, and never read when loading it.
CLIENT_FILES = frozenset({"registered_model_meta"})


class ArtifactIntegrityError(RuntimeError):
    """A model's files do not match the digests recorded when it was registered."""


def file_digest(path: Path) -> str:
    """Hex SHA-256 of one file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def digest_tree(root: Path) -> dict[str, str]:
    """Hex SHA-256 of every file under ``root``, keyed by its POSIX path relative to ``root``
    (``CLIENT_FILES`` at the top level left out)."""
    return {
        path.relative_to(root).as_posix(): file_digest(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).as_posix() not in CLIENT_FILES
    }


def digest_tags(digests: Mapping[str, str]) -> dict[str, str]:
    """The model version tags recording ``digests``."""
    return {f"{TAG_PREFIX}{name}": value for name, value in digests.items()}


def digests_from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The digests recorded in a model version's ``tags`` (empty when none were)."""
    return {k[len(TAG_PREFIX) :]: v for k, v in tags.items() if k.startswith(TAG_PREFIX)}


def verify_tree(root: Path, expected: Mapping[str, str], what: str = "model") -> None:
    """Raise unless the files under ``root`` are exactly those of ``expected``, byte for byte.

    Raises:
        ArtifactIntegrityError: no digests recorded, or a file changed, missing or added.
    """
    if not expected:
        raise ArtifactIntegrityError(f"{what}: no SHA-256 digests recorded; refusing to load it")
    actual = digest_tree(root)
    changed = sorted(k for k in expected.keys() & actual.keys() if expected[k] != actual[k])
    missing = sorted(expected.keys() - actual.keys())
    added = sorted(actual.keys() - expected.keys())
    if changed or missing or added:
        raise ArtifactIntegrityError(
            f"{what}: artifacts differ from those registered (changed {changed}, missing "
            f"{missing}, added {added}); refusing to load it"
        )
