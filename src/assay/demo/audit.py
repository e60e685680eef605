"""The demo's audit of two digit classifiers, step by step, on one platform.

1. Data: scikit-learn's digits, a clean test split and a copy with pixel noise, as Datasets.
2. Systems: a logistic regression and a random forest, trained with scikit-learn, each
   packaged in a Module (the served class and its weights) and registered as a ``python``
   InferenceService.
3. Evaluations: each system on each data set, with a session of two replicas.
4. Measurements, by the built-in methods: ``classification.metrics`` (accuracy, recall of each
   digit, calibration, with intervals) and ``classification.correct`` on the clean data;
   ``robustness.drop`` (clean against noisy); ``comparison.difference`` of the two systems on
   each data set.
5. Safety cases: a notebook Method (:mod:`assay.demo.notebook`) run for each system.

Each entity is made once and found again at the next run (:class:`assay.demo.steps.Steps`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assay.analysis.builtin import Builtin, classification, comparison, robustness
from assay.demo import classifiers, digits, notebook
from assay.demo.classifiers import ModelSpec
from assay.demo.steps import Steps
from assay.local import LocalPlatform

__all__ = ["REPLICAS", "Audit", "System", "run_audit"]

#: Replicas of each evaluation's inference session.
REPLICAS = 2
#: The two data sets: key → (name, title).
DATASETS = {
    "clean": ("digits-test", "Handwritten digits, test split"),
    "noisy": ("digits-test-noisy", "Handwritten digits, test split with pixel noise"),
}


@dataclass
class System:
    """One system under audit and what the demo made for it."""

    spec: ModelSpec
    service: Any = None
    evaluations: dict[str, Any] = field(default_factory=dict)
    """Data set key (``clean``, ``noisy``) → Evaluation."""
    measurements: dict[str, Any] = field(default_factory=dict)
    """Input keyword of the notebook → Measurement."""
    safety_case: Any = None


@dataclass
class Audit:
    """What :func:`run_audit` made: the systems, the data sets and the notebook Method."""

    systems: list[System]
    datasets: dict[str, Any]
    method: Any
    """The notebook Method whose scores compare the systems."""


class _Run:
    """One run of the audit: each method finds or makes the entities of one step."""

    def __init__(self, platform: LocalPlatform, steps: Steps, work: Path) -> None:
        self.platform = platform
        self.steps = steps
        self.account = steps.account
        self.work = work
        self._split: digits.Split | None = None

    @property
    def split(self) -> digits.Split:
        """The digits, loaded the first time a step needs them."""
        if self._split is None:
            self._split = digits.load_split()
        return self._split

    # -- 1. data ---------------------------------------------------------------------------

    def dataset(self, key: str) -> Any:
        name, title = DATASETS[key]

        def make() -> Any:
            s = self.split
            pixels = s.test_pixels if key == "clean" else digits.perturb(s.test_pixels)
            directory = digits.write_parquet(
                digits.table(s.test_index, pixels, s.test_labels), self.work / name
            )
            group = self.platform.datasets
            dataset = group.create_arrow_dataset(directory, account=self.account, name=name)
            dataset = group.upload_arrow_dataset(dataset, directory)
            summary = (
                f"{len(s.test_index)} 8x8 images held out from scikit-learn's digits "
                f"(share {digits.TEST_SHARE}, stratified, seed {digits.SPLIT_SEED})"
            )
            if key == "noisy":
                summary += (
                    f", with Gaussian noise of standard deviation {digits.NOISE} added to "
                    f"every pixel (seed {digits.NOISE_SEED}), clipped to 0..1"
                )
            group.edit_documentation(dataset.id, title=title, summary=summary + ".")
            return dataset

        return self.steps.ensure(self.platform.datasets, f"dataset.{key}", title, make)

    # -- 2. systems ------------------------------------------------------------------------

    def service(self, spec: ModelSpec) -> Any:
        def make_module() -> Any:
            trained = classifiers.train(spec, self.split)
            self.steps.say(f"         trained {spec.title} in {trained.seconds:.2f} s")
            directory = classifiers.write_package(trained, self.work / spec.key)
            group = self.platform.modules
            module = group.create_package(directory, account=self.account, name=spec.name)
            return group.upload_package(module, directory)

        module = self.steps.ensure(
            self.platform.modules, f"module.{spec.key}", f"{spec.title}, trained", make_module
        )

        def make_service() -> Any:
            from assay.local.mocks import ClassifierOutput
            from assay.schema.dataset import make_output_schema

            output = make_output_schema(ClassifierOutput).model_dump(by_alias=True)
            service = self.platform.inferenceservices.create(
                {
                    "account": self.account,
                    "name": spec.name,
                    "runner": {
                        "kind": "python",
                        "configuration": {"module": module.id, "target": classifiers.TARGET},
                    },
                    "interface": {
                        "endpoint": "classify",
                        "outputSchema": output,
                        # send the pixels only: the system never sees the true label
                        "inputPipeline": [
                            {"kind": "TransformJSON", "configuration": {"pixels": "$.pixels"}}
                        ],
                    },
                }
            )
            self.platform.inferenceservices.edit_documentation(
                service.id, title=spec.title, summary="A digit classifier under audit."
            )
            return service

        return self.steps.ensure(
            self.platform.inferenceservices,
            f"service.{spec.key}",
            f"{spec.title}, served by the python runner",
            make_service,
        )

    # -- 3. evaluations --------------------------------------------------------------------

    def evaluation(self, system: System, key: str, dataset: Any) -> Any:
        def make() -> Any:
            return self.platform.evaluations.create(
                {
                    "account": self.account,
                    "dataset": dataset.id,
                    "inferenceSession": {
                        "inferenceService": system.service.id,
                        "replicas": REPLICAS,
                    },
                }
            )

        return self.steps.ensure(
            self.platform.evaluations,
            f"evaluation.{system.spec.key}.{key}",
            f"{system.spec.key} on {key} digits ({REPLICAS} replicas)",
            make,
        )

    # -- 4. measurements -------------------------------------------------------------------

    def builtin(self, builtin: Builtin) -> Any:
        return self.steps.ensure(
            self.platform.methods,
            f"method.{builtin.name}",
            f"built-in method {builtin.name}",
            lambda: builtin.register(self.platform, account=self.account),
        )

    def measure(
        self,
        method: Any,
        step: str,
        what: str,
        scope: Any,
        inputs: dict[str, Any],
        arguments: dict[str, str] | None = None,
    ) -> Any:
        def make() -> Any:
            return self.platform.measurements.create(
                {
                    "account": self.account,
                    "method": method.id,
                    "scope": {"evaluation": scope.id},
                    "inputs": [{"keyword": k, "entity": v.id} for k, v in inputs.items()],
                    "arguments": [{"keyword": k, "value": v} for k, v in (arguments or {}).items()],
                }
            )

        return self.steps.ensure(self.platform.measurements, step, what, make)

    # -- 5. safety cases -------------------------------------------------------------------

    def notebook_method(self) -> Any:
        def make_module() -> Any:
            directory = self.work / "audit"
            notebook.write_notebook(directory / notebook.NOTEBOOK)
            group = self.platform.modules
            module = group.create_package(directory, account=self.account, name="digits-audit")
            return group.upload_package(module, directory)

        module = self.steps.ensure(
            self.platform.modules, "module.audit", "the safety-case notebook", make_module
        )
        return self.steps.ensure(
            self.platform.methods,
            "method.safety-case",
            "notebook method digits-safety-case",
            lambda: self.platform.methods.create(
                notebook.method_request(account=self.account, module=module.id)
            ),
        )

    def safety_case(self, method: Any, side: str, system: System, other: System) -> Any:
        def make() -> Any:
            return self.platform.safetycases.create(
                {
                    "account": self.account,
                    "method": method.id,
                    "scope": {"evaluation": system.evaluations["clean"].id},
                    "inputs": [
                        {"keyword": k, "entity": m.id} for k, m in system.measurements.items()
                    ],
                    "arguments": [
                        {"keyword": "side", "value": side},
                        {"keyword": "system", "value": system.spec.title},
                        {"keyword": "other", "value": other.spec.title},
                    ],
                }
            )

        return self.steps.ensure(
            self.platform.safetycases,
            f"safetycase.{system.spec.key}",
            f"safety case of {system.spec.key}",
            make,
        )


def run_audit(platform: LocalPlatform, steps: Steps) -> Audit:
    """Run (or reuse) every step of the audit on ``platform``; returns what it made."""
    with tempfile.TemporaryDirectory(prefix="assay-demo-") as tmp:
        run = _Run(platform, steps, Path(tmp))
        systems = [System(spec) for spec in classifiers.MODELS]

        steps.heading("1. Data: scikit-learn's handwritten digits (nothing is downloaded)")
        datasets = {key: run.dataset(key) for key in DATASETS}

        steps.heading("2. Systems: two classifiers, each a python inference service")
        for system in systems:
            system.service = run.service(system.spec)

        steps.heading(f"3. Evaluations: each system on each data set, {REPLICAS} replicas")
        for system in systems:
            for key, dataset in datasets.items():
                system.evaluations[key] = run.evaluation(system, key, dataset)

        steps.heading("4. Measurements by the built-in methods")
        metrics = run.builtin(classification.METRICS)
        correct = run.builtin(classification.CORRECT)
        drop = run.builtin(robustness.DROP)
        difference = run.builtin(comparison.DIFFERENCE)
        clean, noisy = datasets["clean"], datasets["noisy"]
        for system in systems:
            key, ev = system.spec.key, system.evaluations
            inputs = {"evaluation": ev["clean"], "dataset": clean}
            system.measurements["metrics"] = run.measure(
                metrics,
                f"measurement.metrics.{key}",
                f"{key}: accuracy, recall, calibration",
                ev["clean"],
                inputs,
            )
            system.measurements["instances"] = run.measure(
                correct, f"measurement.correct.{key}", f"{key}: each answer", ev["clean"], inputs
            )
            system.measurements["robustness"] = run.measure(
                drop,
                f"measurement.drop.{key}",
                f"{key}: robustness drop, clean vs noisy",
                ev["clean"],
                {"clean": ev["clean"], "perturbed": ev["noisy"], "dataset": clean},
            )
        a, b = systems
        for key, dataset, keyword in (
            ("clean", clean, "comparison"),
            ("noisy", noisy, "comparison_noisy"),
        ):
            compared = run.measure(
                difference,
                f"measurement.comparison.{key}",
                f"{a.spec.key} vs {b.spec.key} on {key} digits, paired",
                a.evaluations[key],
                {"a": a.evaluations[key], "b": b.evaluations[key], "dataset": dataset},
            )
            for system in systems:
                system.measurements[keyword] = compared

        steps.heading("5. Safety cases: a notebook method, rendered for each system")
        method = run.notebook_method()
        for side, system, other in (("a", a, b), ("b", b, a)):
            system.safety_case = run.safety_case(method, side, system, other)
    return Audit(systems=systems, datasets=datasets, method=method)
