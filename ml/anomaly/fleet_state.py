"""A fitted detector fleet as data files: JSON, NPZ and a torch ``state_dict``, no pickle.

The registered detector's fitted state must load after any refactor and must not run code when
it is loaded. ``save_fleet`` writes three files:

- ``fleet.json``: the configuration and every scalar of every fitted detector. Objects are
  written as tagged dictionaries whose tags (``"detector": "isolation_forest"``, ``"type":
  "seasonality"``) name entries of a closed table of known types here, never a module path,
  so moving or renaming a class changes this table, not the artifacts already registered.
- ``fleet.npz``: every array (training tails, calibration references, compiled Isolation
  Forest nodes), read back with ``allow_pickle=False``.
- ``networks.pt``: the LSTM autoencoders' ``state_dict`` tensors, read back with
  ``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers.

``load_fleet`` rebuilds the fleet from them; it scores exactly as the fleet that was saved
(``tests/unit/test_fleet_state.py``). ``FORMAT`` versions the layout: a reader meeting a newer
format refuses instead of guessing.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ml.anomaly.base import _Fitted
from ml.anomaly.baseline import RobustBaseline
from ml.anomaly.compiled_forest import CompiledForest
from ml.anomaly.cusum import CusumDetector
from ml.anomaly.ensemble import EnsembleDetector
from ml.anomaly.fleet import DetectorSpec, Fleet
from ml.anomaly.isolation_forest import IsolationForestDetector
from ml.anomaly.lstm_autoencoder import LstmAutoencoder, LstmAutoencoderDetector
from ml.anomaly.seasonal import Seasonality

FORMAT = 1
STATE_FILE = "fleet.json"
ARRAYS_FILE = "fleet.npz"
NETWORKS_FILE = "networks.pt"
FILES = (STATE_FILE, ARRAYS_FILE, NETWORKS_FILE)

#: The detector classes a state file may name, by their stable ``name``.
DETECTORS: dict[str, type] = {
    cls.name: cls
    for cls in (
        RobustBaseline,
        IsolationForestDetector,
        LstmAutoencoderDetector,
        EnsembleDetector,
        CusumDetector,
    )
}
#: The fitted-state dataclasses a state file may name.
TYPES: dict[str, type] = {
    "fitted": _Fitted,
    "seasonality": Seasonality,
    "compiled_forest": CompiledForest,
}
_TYPE_TAGS = {cls: tag for tag, cls in TYPES.items()}


class FleetStateError(ValueError):
    """The state files do not describe a fleet this code can rebuild."""


class _Writer:
    """Encodes objects to JSON values, collecting arrays and networks on the side."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.networks: dict[str, LstmAutoencoder] = {}
        self._network_ids: dict[int, str] = {}

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"float": repr(value)}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise FleetStateError("object arrays cannot be stored as data")
            key = f"a{len(self.arrays)}"
            self.arrays[key] = value
            return {"array": key}
        if isinstance(value, pd.Timestamp):
            return {"timestamp": value.isoformat()}
        if isinstance(value, tuple | list):
            return {"tuple": [self.encode(v) for v in value]}
        if isinstance(value, LstmAutoencoder):
            key = self._network_ids.get(id(value))
            if key is None:
                key = self._network_ids[id(value)] = f"n{len(self.networks)}"
                self.networks[key] = value
            return {"network": key}
        if type(value) in _TYPE_TAGS:
            return {
                "type": _TYPE_TAGS[type(value)],
                "fields": {f.name: self.encode(getattr(value, f.name)) for f in fields(value)},
            }
        name = getattr(type(value), "name", None)
        if name in DETECTORS and type(value) is DETECTORS[name]:
            return {
                "detector": name,
                "state": {k: self.encode(v) for k, v in sorted(vars(value).items())},
            }
        raise FleetStateError(f"cannot store a {type(value).__name__} as data")


class _Reader:
    def __init__(self, arrays: dict[str, np.ndarray], networks: dict[str, LstmAutoencoder]):
        self.arrays = arrays
        self.networks = networks

    def decode(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if "float" in value:
            return float(value["float"])
        if "array" in value:
            return self.arrays[value["array"]]
        if "timestamp" in value:
            return pd.Timestamp(value["timestamp"])
        if "tuple" in value:
            return tuple(self.decode(v) for v in value["tuple"])
        if "network" in value:
            return self.networks[value["network"]]
        if "type" in value:
            cls = TYPES.get(value["type"])
            if cls is None:
                raise FleetStateError(f"unknown state type {value['type']!r}")
            return cls(**{k: self.decode(v) for k, v in value["fields"].items()})
        if "detector" in value:
            cls = DETECTORS.get(value["detector"])
            if cls is None:
                raise FleetStateError(f"unknown detector {value['detector']!r}")
            detector = cls.__new__(cls)
            for key, item in value["state"].items():
                decoded = self.decode(item)
                # Lists are the members of an ensemble; every other sequence was a tuple.
                setattr(detector, key, list(decoded) if key == "members" else decoded)
            return detector
        raise FleetStateError(f"unrecognised state entry {sorted(value)}")


def save_fleet(fleet: Fleet, directory: Path) -> list[Path]:
    """Write ``fleet`` as ``FILES`` into ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    writer = _Writer()
    state = {
        "format": FORMAT,
        "spec": {
            f.name: list(v) if isinstance(v := getattr(fleet.spec, f.name), tuple) else v
            for f in fields(DetectorSpec)
        },
        "step_seconds": fleet.step.total_seconds(),
        "network": writer.encode(fleet.network),
        "skipped": [list(key) for key in fleet.skipped],
        "series": [
            {
                "series_id": series_id,
                "metric": metric,
                "train_end": writer.encode(fleet.train_end[(series_id, metric)]),
                "detector": writer.encode(detector),
            }
            for (series_id, metric), detector in fleet.detectors.items()
        ],
        "networks": {
            key: {
                "hidden": int(net.hparams["hidden"]),
                "latent": int(net.hparams["latent"]),
                "learning_rate": float(net.hparams["learning_rate"]),
            }
            for key, net in writer.networks.items()
        },
    }
    paths = [directory / name for name in FILES]
    paths[0].write_text(json.dumps(state, indent=1, sort_keys=True))
    np.savez_compressed(paths[1], **writer.arrays)
    torch.save({key: net.state_dict() for key, net in writer.networks.items()}, paths[2])
    return paths


def load_fleet(directory: Path) -> Fleet:
    """The fleet ``save_fleet`` wrote into ``directory``.

    Raises:
        FleetStateError: a newer format, or a type this code does not know.
    """
    state = json.loads((directory / STATE_FILE).read_text())
    if state.get("format") != FORMAT:
        raise FleetStateError(f"fleet state format {state.get('format')!r}, expected {FORMAT}")
    with np.load(directory / ARRAYS_FILE, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    tensors = torch.load(directory / NETWORKS_FILE, weights_only=True, map_location="cpu")
    networks: dict[str, LstmAutoencoder] = {}
    for key, hparams in state["networks"].items():
        # Building the module draws initial weights: leave the caller's RNG as it was.
        with torch.random.fork_rng(devices=[]):
            network = LstmAutoencoder(**hparams)
        network.load_state_dict(tensors[key])
        networks[key] = network
    reader = _Reader(arrays, networks)
    spec = DetectorSpec.from_dict(state["spec"])
    detectors, train_end = {}, {}
    for entry in state["series"]:
        key = (entry["series_id"], entry["metric"])
        detectors[key] = reader.decode(entry["detector"])
        train_end[key] = reader.decode(entry["train_end"])
    return Fleet(
        spec,
        detectors,
        train_end,
        reader.decode(state["network"]),
        pd.Timedelta(seconds=state["step_seconds"]),
        [tuple(key) for key in state["skipped"]],
    )
