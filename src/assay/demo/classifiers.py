"""The two systems under audit: classifiers of handwritten digits trained with scikit-learn,
exported to numpy arrays for :class:`assay.demo.served.DigitClassifier`, and packaged as
Modules.

Training is seeded and single-threaded (BLAS threads are limited to one: on a small machine
shared with other work, more threads only slow the solver down), so the same scikit-learn
version gives the same weights at every run. scikit-learn is imported only here, and only when
a model is trained; :func:`require_sklearn` says how to install it when it is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from assay import errors
from assay.demo import served
from assay.demo.digits import Split

__all__ = [
    "INSTALL_HINT",
    "MODELS",
    "PACKAGE",
    "TARGET",
    "ModelSpec",
    "Trained",
    "require_sklearn",
    "train",
    "write_package",
]

#: The package name of a model's Module, and the class the ``python`` runner serves.
PACKAGE = "digit_classifier"
TARGET = f"{PACKAGE}:DigitClassifier"

#: What to tell a user without scikit-learn.
INSTALL_HINT = (
    "assay demo trains two scikit-learn classifiers, and scikit-learn is not installed: "
    "pip install 'assay[demo]' (or run 'assay demo --text', which needs nothing more)"
)


def require_sklearn() -> None:
    """Raise :class:`assay.errors.ValidationError` with the install command when scikit-learn
    cannot be imported."""
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:  # found, not imported: that takes a second
        raise errors.ValidationError(INSTALL_HINT, field="scikit-learn")


@dataclass(frozen=True)
class ModelSpec:
    """One of the demo's systems: how to make its scikit-learn estimator, and how to export
    the fitted estimator to the arrays of ``weights.npz``."""

    key: str
    """Short name, used in labels and the table (``logreg``, ``forest``)."""
    name: str
    """Name of its Module and InferenceService."""
    title: str
    """What it is, for people."""
    make: Callable[[], Any]
    """A new, unfitted scikit-learn estimator (seeded)."""
    export: Callable[[Any], dict[str, NDArray[Any]]]
    """The arrays of ``weights.npz`` for the fitted estimator (see :mod:`assay.demo.served`)."""

    def fit(self, split: Split) -> Any:
        """The estimator fitted on the training part of ``split``, with one BLAS thread."""
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # of sklearn

        require_sklearn()
        model = self.make()
        with threadpool_limits(limits=1):
            model.fit(split.train_pixels, split.train_labels)
        return model


@dataclass(frozen=True)
class Trained:
    """A trained model's weights, ready to package."""

    spec: ModelSpec
    arrays: dict[str, NDArray[Any]]
    """The arrays of ``weights.npz`` (see :mod:`assay.demo.served`)."""
    seconds: float
    """How long training took."""


def _logistic() -> Any:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    return LogisticRegression(C=0.1, max_iter=1000)


def _export_logistic(model: Any) -> dict[str, NDArray[Any]]:
    return {
        "kind": np.array("logistic"),
        "labels": np.asarray(model.classes_).astype(str),
        "coef": np.asarray(model.coef_, dtype=np.float64),
        "intercept": np.asarray(model.intercept_, dtype=np.float64),
    }


def _forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]

    return RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)


def _export_forest(model: Any) -> dict[str, NDArray[Any]]:
    """Every tree's arrays, padded to the largest tree (padding nodes are leaves)."""
    trees = [estimator.tree_ for estimator in model.estimators_]
    size = max(t.node_count for t in trees)
    shape = (len(trees), size)
    feature = np.full(shape, -2, dtype=np.int64)
    threshold = np.zeros(shape, dtype=np.float64)
    left = np.full(shape, -1, dtype=np.int64)
    right = np.full(shape, -1, dtype=np.int64)
    value = np.zeros((*shape, len(model.classes_)), dtype=np.float64)
    for i, t in enumerate(trees):
        n = t.node_count
        feature[i, :n] = t.feature
        threshold[i, :n] = t.threshold
        left[i, :n] = t.children_left
        right[i, :n] = t.children_right
        counts = np.asarray(t.value[:, 0, :], dtype=np.float64)
        value[i, :n] = counts / counts.sum(axis=1, keepdims=True)  # class shares of a node
    return {
        "kind": np.array("forest"),
        "labels": np.asarray(model.classes_).astype(str),
        "feature": feature,
        "threshold": threshold,
        "left": left,
        "right": right,
        "value": value,
        "depth": np.array(max(t.max_depth for t in trees)),
    }


#: The two systems, in the order of the comparison (``a``, then ``b``).
MODELS = (
    ModelSpec(
        key="logreg",
        name="digits-logistic-regression",
        title="Logistic regression (L2, C = 0.1)",
        make=_logistic,
        export=_export_logistic,
    ),
    ModelSpec(
        key="forest",
        name="digits-random-forest",
        title="Random forest (100 trees)",
        make=_forest,
        export=_export_forest,
    ),
)


def train(spec: ModelSpec, split: Split) -> Trained:
    """Train ``spec`` on ``split`` and export it (seeded: the same arrays at every call)."""
    import time

    started = time.perf_counter()
    arrays = spec.export(spec.fit(split))
    return Trained(spec=spec, arrays=arrays, seconds=time.perf_counter() - started)


def write_package(trained: Trained, directory: Path) -> Path:
    """Write the Module's files for ``trained`` under ``directory``: the package
    ``digit_classifier/`` with the served class (:mod:`assay.demo.served`, copied as its
    ``__init__.py``) and ``weights.npz``. Returns ``directory``."""
    package = directory / PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(served.__file__), package / "__init__.py")
    # np.savez writes a zip whose entries carry the time of writing; fix it so that the same
    # weights always make the same file (and the same md5).
    _savez_reproducibly(package / "weights.npz", trained.arrays)
    return directory


def _savez_reproducibly(path: Path, arrays: dict[str, NDArray[Any]]) -> None:
    import io
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(arrays[name]), allow_pickle=False)
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, buffer.getvalue())
