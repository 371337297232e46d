"""Models-from-code entry of the registered detector: MLflow runs this file to load the model.

Never imported by the project: ``mlflow.models.set_model`` registers the wrapper globally.
"""

import mlflow.models

from ml.pyfunc.detector import DetectorModel

mlflow.models.set_model(DetectorModel())
