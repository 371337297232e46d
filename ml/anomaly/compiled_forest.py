"""A fitted Isolation Forest flattened into arrays, scored for many rows in one vectorised pass.

scikit-learn's ``IsolationForest.score_samples`` walks its trees one by one in Python (about
0.1 ms per tree), which makes the forest ~60% of the time it takes to score one new hour of a
series. Here every tree's nodes sit in one set of arrays and all rows descend all trees together,
one level per step (a forest of ``max_samples = 256`` is at most 8 levels deep). The arithmetic
is scikit-learn's: the same float32 comparisons, node depths and average path length ``c(n)``;
``tests/unit/test_compiled_forest.py`` holds the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import IsolationForest

_EULER_GAMMA = np.euler_gamma


def average_path_length(n: np.ndarray) -> np.ndarray:
    """``c(n)``: the mean depth of an unsuccessful search in a binary tree of ``n`` points
    (Liu, Ting and Zhou, 2008); 0 for ``n <= 1`` and 1 for ``n == 2``."""
    n = np.asarray(n, dtype=float)
    out = np.zeros_like(n)
    two = n == 2
    more = n > 2
    out[two] = 1.0
    m = n[more]
    out[more] = 2.0 * (np.log(m - 1.0) + _EULER_GAMMA) - 2.0 * (m - 1.0) / m
    return out


@dataclass(frozen=True)
class CompiledForest:
    """The nodes of every tree of a fitted ``IsolationForest``, concatenated.

    Attributes:
        roots: index of each tree's root node.
        left, right: child node indexes (``-1`` at a leaf).
        feature: the split feature of each node.
        threshold: the split threshold (go left when ``x <= threshold``).
        path: at a leaf, its depth plus ``c(points in the leaf)`` minus one: the path length
            a row ending there contributes.
        depth: the deepest level of any tree.
        denominator: ``trees * c(max_samples)``.
    """

    roots: np.ndarray
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    path: np.ndarray
    depth: int
    denominator: float

    @classmethod
    def from_sklearn(cls, forest: IsolationForest) -> CompiledForest:
        """Flatten a fitted forest; only forests that use every feature in every tree."""
        if any(len(f) != forest.n_features_in_ for f in forest.estimators_features_):
            raise ValueError("feature-subsampled forests are not supported")
        roots, left, right, feature, threshold, path = [], [], [], [], [], []
        offset, depth = 0, 0
        for estimator in forest.estimators_:
            tree = estimator.tree_
            leaf = tree.children_left == -1
            roots.append(offset)
            left.append(np.where(leaf, -1, tree.children_left + offset))
            right.append(np.where(leaf, -1, tree.children_right + offset))
            # Leaves get feature 0 so the gather below stays in bounds; they never move.
            feature.append(np.where(leaf, 0, tree.feature))
            threshold.append(tree.threshold)
            path.append(tree.compute_node_depths() + average_path_length(tree.n_node_samples) - 1.0)
            depth = max(depth, int(tree.max_depth))
            offset += tree.node_count
        denominator = len(forest.estimators_) * float(
            average_path_length(np.array([forest.max_samples_]))[0]
        )
        return cls(
            roots=np.asarray(roots, dtype=np.int64),
            left=np.concatenate(left).astype(np.int64),
            right=np.concatenate(right).astype(np.int64),
            feature=np.concatenate(feature).astype(np.int64),
            threshold=np.concatenate(threshold).astype(float),
            path=np.concatenate(path).astype(float),
            depth=depth,
            denominator=denominator,
        )

    def score_samples(self, rows: np.ndarray) -> np.ndarray:
        """The same values as ``IsolationForest.score_samples`` (higher = more normal)."""
        # scikit-learn compares float32 inputs with float64 thresholds.
        x = np.asarray(rows, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError("rows must be two-dimensional")
        n = len(x)
        if n == 0:
            return np.zeros(0)
        node = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        row = np.arange(n)[:, None]
        for _ in range(self.depth):
            left = self.left[node]
            inner = left >= 0
            if not inner.any():
                break
            go_left = x[row, self.feature[node]] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, left, self.right[node]), node)
        depths = self.path[node].sum(axis=1)
        if self.denominator == 0:
            return -np.ones(n)
        return -np.power(2.0, -depths / self.denominator)
