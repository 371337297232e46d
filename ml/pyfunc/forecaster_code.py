"""Models-from-code entry of the registered forecaster: MLflow runs this file to load the model.

Never imported by the project: ``mlflow.models.set_model`` registers the wrapper globally.
"""

import mlflow.models

from ml.pyfunc.forecaster import ForecasterModel

mlflow.models.set_model(ForecasterModel())
