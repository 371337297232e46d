"""Build a registered model's wrapper from its directory: current code, the model's data files."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.models
from mlflow.pyfunc import PythonModelContext

from ml.pyfunc.detector import DetectorModel
from ml.pyfunc.forecaster import ForecasterModel

#: The artifact every registered model has: a JSON object whose ``kind`` names its wrapper.
CONFIG_ARTIFACT = "config"
WRAPPERS: dict[str, type[DetectorModel] | type[ForecasterModel]] = {
    "detector": DetectorModel,
    "forecaster": ForecasterModel,
}


def load_model_dir(model_dir: Path) -> DetectorModel | ForecasterModel:
    """The wrapper of the model saved in ``model_dir`` (a downloaded MLflow model directory).

    Reads only data: the ``MLmodel`` YAML for where the artifacts are, the ``config`` JSON for
    which wrapper, and the artifacts themselves. The models-from-code entry script stored with
    the model is not run, so a model registered before a refactor loads with the code after
    it. Verify the directory (``ml.pyfunc.integrity.verify_tree``) before calling this.
    """
    flavor = mlflow.models.Model.load(str(model_dir)).flavors["python_function"]
    artifacts = {
        name: str(model_dir / entry["path"]) for name, entry in flavor["artifacts"].items()
    }
    config = json.loads(Path(artifacts[CONFIG_ARTIFACT]).read_text())
    wrapper = WRAPPERS.get(config.get("kind"))
    if wrapper is None:
        raise ValueError(f"{model_dir}: unknown model kind {config.get('kind')!r}")
    model = wrapper()
    model.load_context(PythonModelContext(artifacts=artifacts, model_config={}))
    return model
