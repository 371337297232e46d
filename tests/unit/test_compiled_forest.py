import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from ml.anomaly.compiled_forest import CompiledForest, average_path_length


@pytest.mark.parametrize(
    ("rows", "max_samples", "features"), [(300, 256, 10), (40, 256, 3), (5, 4, 1)]
)
def test_compiled_forest_scores_equal_sklearn(rows: int, max_samples: int, features: int) -> None:
    rng = np.random.default_rng(rows)
    train = rng.normal(size=(rows, features))
    forest = IsolationForest(n_estimators=50, max_samples=min(max_samples, rows), random_state=1)
    forest.fit(train)
    new = np.vstack([rng.normal(size=(200, features)), rng.normal(8, 1, size=(5, features))])

    expected = forest.score_samples(new)
    got = CompiledForest.from_sklearn(forest).score_samples(new)

    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_average_path_length_small_cases() -> None:
    np.testing.assert_allclose(average_path_length(np.array([0, 1, 2])), [0.0, 0.0, 1.0])
    # c(256) from Liu et al.: 2 H(255) - 2 * 255 / 256.
    harmonic = np.log(255) + np.euler_gamma
    assert average_path_length(np.array([256]))[0] == pytest.approx(2 * harmonic - 2 * 255 / 256)
