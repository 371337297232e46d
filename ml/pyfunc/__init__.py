"""The registered models: MLflow pyfunc wrappers logged as models-from-code, state as data.

Each model is logged with ``mlflow.pyfunc.log_model(python_model=<entry script>, artifacts=...)``
(MLflow's models-from-code): the entry script (``detector_code.py``, ``forecaster_code.py``)
builds the wrapper with ``mlflow.models.set_model``; nothing is pickled. The fitted state lives
in data files (``ml.anomaly.fleet_state``; JSON for the forecaster's configuration), and every
file of the registered model has its SHA-256 on the model version (``ml.pyfunc.integrity``),
checked before the model is loaded. ``load_model_dir`` builds the wrapper from the current code
and the data files alone, so a version registered before a refactor loads after it.

Timestamps cross the pyfunc boundary as timezone-naive UTC (MLflow's datetime schema rejects
timezone-aware columns); the models localise them to UTC again.
"""

from ml.pyfunc.detector import DETECTOR_CODE, SCORE_OUTPUT, DetectorModel, save_detector
from ml.pyfunc.forecaster import (
    FORECAST_OUTPUT,
    FORECASTER_CODE,
    ForecasterModel,
    save_forecaster,
)
from ml.pyfunc.integrity import (
    ArtifactIntegrityError,
    digest_tags,
    digest_tree,
    digests_from_tags,
    verify_tree,
)
from ml.pyfunc.loading import CONFIG_ARTIFACT, load_model_dir

__all__ = [
    "CONFIG_ARTIFACT",
    "DETECTOR_CODE",
    "FORECASTER_CODE",
    "FORECAST_OUTPUT",
    "SCORE_OUTPUT",
    "ArtifactIntegrityError",
    "DetectorModel",
    "ForecasterModel",
    "digest_tags",
    "digest_tree",
    "digests_from_tags",
    "load_model_dir",
    "save_detector",
    "save_forecaster",
    "verify_tree",
]
