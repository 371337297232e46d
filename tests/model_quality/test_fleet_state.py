"""The fitted fleet as data files: it scores as before, after a module move, and holds no code."""

import json
import os
import pickletools
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import ml
from ml.anomaly.fleet import DetectorSpec, Fleet
from ml.anomaly.fleet_state import (
    ARRAYS_FILE,
    NETWORKS_FILE,
    STATE_FILE,
    FleetStateError,
    load_fleet,
    save_fleet,
)

TRAIN, NEW = 24 * 10, 24 * 2
PROJECT_MODULES = (b"ml.", b"assets.", b"llmhub.", b"orchestration.", b"__main__")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _series(seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    hours = TRAIN + NEW
    index = pd.date_range("2026-10-01", periods=hours, freq="h", tz="UTC")
    daily = 1 + 0.5 * np.sin(2 * np.pi * np.arange(hours) / 24)
    return pd.Series(rng.poisson(100 * daily).astype(float), index=index)


@pytest.fixture(scope="module")
def series() -> dict[tuple[str, str], pd.Series]:
    out = {(f"t/app-{i}/m", "request_count"): _series(i) for i in range(2)}
    out[("t/app-1/m", "request_count")].iloc[TRAIN + 10] += 1000.0
    return out


def _fit(series, shared_network: bool) -> Fleet:
    spec = DetectorSpec(network_epochs=1, min_train_points=72, shared_network=shared_network)
    fitted = Fleet.fit(spec, {k: v.iloc[:TRAIN] for k, v in series.items()})
    fitted.set_threshold(("t/app-0/m", "request_count"), 0.7)
    return fitted


@pytest.fixture(scope="module")
def fleet(series) -> Fleet:
    return _fit(series, shared_network=True)


def _scores(fleet: Fleet, series) -> dict[tuple[str, str], np.ndarray]:
    return {k: r.scores for k, r in fleet.score(series, hours=NEW).results.items()}


@pytest.mark.parametrize("shared_network", [True, False])
def test_a_saved_fleet_scores_exactly_as_the_fitted_one(
    fleet, series, shared_network: bool, tmp_path: Path
) -> None:
    if not shared_network:
        fleet = _fit(series, shared_network=False)
    save_fleet(fleet, tmp_path)
    loaded = load_fleet(tmp_path)
    assert loaded.spec == fleet.spec
    assert loaded.threshold(("t/app-0/m", "request_count")) == 0.7
    assert loaded.train_end == fleet.train_end
    expected, got = _scores(fleet, series), _scores(loaded, series)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def test_the_files_hold_data_and_no_code_reference(fleet, tmp_path: Path) -> None:
    save_fleet(fleet, tmp_path)
    state = (tmp_path / STATE_FILE).read_bytes()
    assert not any(module in state for module in PROJECT_MODULES)
    json.loads(state)
    # Object arrays would need pickle: allow_pickle=False refuses them.
    with np.load(tmp_path / ARRAYS_FILE, allow_pickle=False) as arrays:
        assert all(arrays[k].dtype != object for k in arrays.files)
    # torch's zip holds a restricted pickle of tensors: only torch and container globals.
    with zipfile.ZipFile(tmp_path / NETWORKS_FILE) as archive:
        (pickled,) = [n for n in archive.namelist() if n.endswith("data.pkl")]
        data = archive.read(pickled)
    strings = [arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str)]
    assert not any(s.startswith(("ml", "assets", "llmhub", "pytorch_lightning")) for s in strings)
    torch.load(tmp_path / NETWORKS_FILE, weights_only=True)


def test_a_newer_format_is_refused(fleet, tmp_path: Path) -> None:
    save_fleet(fleet, tmp_path)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    state["format"] = 99
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(FleetStateError, match="format"):
        load_fleet(tmp_path)


def test_an_unknown_detector_tag_is_refused(fleet, tmp_path: Path) -> None:
    save_fleet(fleet, tmp_path)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    state["series"][0]["detector"]["detector"] = "os.system"
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(FleetStateError, match="unknown detector"):
        load_fleet(tmp_path)


_LOAD_AFTER_MOVE = """
import sys
from pathlib import Path
import numpy as np
import pandas as pd
from ml.anomaly.detector_fleet import Fleet  # the moved module
from ml.anomaly.fleet_state import load_fleet
import ml.anomaly
assert not Path(ml.anomaly.__file__).parent.joinpath("fleet.py").exists()
fleet = load_fleet(Path(sys.argv[1]))
assert isinstance(fleet, Fleet)
with np.load(sys.argv[2]) as saved:
    index = pd.to_datetime(saved["index"], utc=True)
    series = {
        tuple(name.split("|")): pd.Series(saved[name], index=index)
        for name in saved.files
        if name != "index"
    }
results = fleet.score(series, hours=int(sys.argv[3])).results
np.savez(sys.argv[4], **{"|".join(k): r.scores for k, r in results.items()})
"""


def test_a_fleet_saved_before_a_module_move_loads_after_it(fleet, series, tmp_path: Path) -> None:
    # The pickled fleet this replaced named ml.anomaly.fleet.Fleet: moving a class broke it.
    save_fleet(fleet, tmp_path / "state")
    moved = tmp_path / "code"
    shutil.copytree(Path(ml.__file__).parent, moved / "ml", ignore=shutil.ignore_patterns("*.pyc"))
    anomaly = moved / "ml" / "anomaly"
    (anomaly / "fleet.py").rename(anomaly / "detector_fleet.py")
    (anomaly / "compiled_forest.py").rename(anomaly / "forest_arrays.py")
    for path in (moved / "ml").rglob("*.py"):
        text = path.read_text()
        text = text.replace("ml.anomaly.fleet ", "ml.anomaly.detector_fleet ")
        text = text.replace("ml.anomaly.compiled_forest", "ml.anomaly.forest_arrays")
        path.write_text(text)
    np.savez(
        tmp_path / "series.npz",
        index=next(iter(series.values())).index.asi8,
        **{"|".join(k): v.to_numpy() for k, v in series.items()},
    )
    script = tmp_path / "load.py"
    script.write_text(_LOAD_AFTER_MOVE)
    env = {**os.environ, "PYTHONPATH": str(moved)}
    subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "state"),
            str(tmp_path / "series.npz"),
            str(NEW),
            str(tmp_path / "scores.npz"),
        ],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    with np.load(tmp_path / "scores.npz") as got:
        for key, scores in _scores(fleet, series).items():
            np.testing.assert_array_equal(got["|".join(key)], scores)


def test_a_fleet_with_the_cusum_member_round_trips(series, tmp_path: Path) -> None:
    spec = DetectorSpec(members=("robust_baseline", "cusum"), fusion="max", min_train_points=72)
    fitted = Fleet.fit(spec, {k: v.iloc[:TRAIN] for k, v in series.items()})
    save_fleet(fitted, tmp_path)
    loaded = load_fleet(tmp_path)
    assert loaded.spec == spec
    expected, got = _scores(fitted, series), _scores(loaded, series)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
