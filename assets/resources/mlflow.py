"""The MLflow tracking server and model registry, as one resource."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import mlflow
import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import Field

from ml.pyfunc import (
    ArtifactIntegrityError,
    DetectorModel,
    ForecasterModel,
    digests_from_tags,
    load_model_dir,
    verify_tree,
)


class MlflowResource(dg.ConfigurableResource):
    """Where runs are tracked and models registered (``MLFLOW_TRACKING_URI``).

    The only place an ``MlflowClient`` is built. ``mlflow``'s module-level tracking URI is
    global state, so ``start_run`` sets it on entry: every asset that logs goes through here.
    """

    tracking_uri: str = Field(description="MLflow tracking server, e.g. http://127.0.0.1:5000.")

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created on first use."""
        client = self.client()
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(name)

    @contextmanager
    def start_run(
        self, experiment: str, run_name: str | None = None, tags: dict[str, str] | None = None
    ) -> Iterator[Run]:
        """An active MLflow run in ``experiment``; it ends FAILED if the block raises."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        with mlflow.start_run(
            experiment_id=self.experiment_id(experiment), run_name=run_name, tags=tags
        ) as run:
            yield run

    def champion_version(self, model_name: str, alias: str = "champion") -> str | None:
        """The version behind ``alias`` of ``model_name``, ``None`` if either does not exist."""
        try:
            return self.client().get_model_version_by_alias(model_name, alias).version
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def download_model(self, model_name: str, version: str, directory: Path) -> Path:
        """The files of ``model_name`` version ``version``, downloaded into ``directory``."""
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{model_name}/{version}",
                dst_path=str(directory),
                tracking_uri=self.tracking_uri,
            )
        )

    def load_champion(
        self, model_name: str, alias: str = "champion"
    ) -> tuple[DetectorModel | ForecasterModel, ModelVersion]:
        """The model behind ``alias``, checked against its SHA-256 tags, and its version.

        The alias is resolved once and the model loaded by version, so the version recorded
        with the outputs is the one that produced them even if the alias moves meanwhile.
        The model's files are downloaded and each compared with the digest recorded on the
        version at registration before anything is read from them; the wrapper is then built
        from the current code and the model's data files (``ml.pyfunc.load_model_dir``).

        Raises:
            dagster.Failure: the model has no such alias (nothing has been promoted yet), or
                its files differ from those registered (tampered, or never digested).
        """
        if self.champion_version(model_name, alias) is None:
            raise dg.Failure(f"registered model {model_name!r} has no {alias!r} alias yet")
        version = self.client().get_model_version_by_alias(model_name, alias)
        with tempfile.TemporaryDirectory() as tmp:
            local = self.download_model(model_name, version.version, Path(tmp))
            try:
                verify_tree(
                    local,
                    digests_from_tags(version.tags or {}),
                    f"{model_name} v{version.version}",
                )
            except ArtifactIntegrityError as exc:
                raise dg.Failure(
                    description=str(exc),
                    metadata={"model_name": model_name, "model_version": version.version},
                ) from exc
            return load_model_dir(local), version
