"""The model manifest: ``models/NAME.json`` beside ``models/NAME.tflite``.

The manifest is the whole contract between trainer and device: labels in output order, every
feature parameter, the model's input shape, the sha256 of the .tflite, provenance and metrics.
Labels are never hard-coded anywhere else. (Piper's ``model.onnx.json`` convention.)
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from edge.dsp.features import PITCH_FEATURES, FeatureParams

SCHEMA_VERSION = 1
SHA256_PREFIX_CHARS = 12
OUTPUT_KINDS = ("probabilities", "logits")
LICENCE_NOT_STATED = "licence: not stated in the manifest"
"""What :meth:`ModelManifest.use_summary` says of a manifest without ``training.use`` or corpus licences."""


class ManifestError(ValueError):
    """A manifest that is missing, malformed or does not match its model. One-line message."""


@dataclass(frozen=True)
class InputSpec:
    """The model's input: ``frames`` MFCC frames of ``coefficients`` each, covering ``window_s`` seconds."""

    frames: int
    coefficients: int
    window_s: float


@dataclass(frozen=True)
class ModelManifest:
    name: str
    model_file: str
    sha256: str
    labels: tuple[str, ...]
    label_scheme: str
    features: FeatureParams
    input: InputSpec
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    dimensions: tuple[str, ...] = ()
    """Continuous outputs beside the labels, e.g. ``("arousal", "valence")`` (each in [-1, 1]); empty
    for a classifier only."""
    output: str = "probabilities"
    """What the label output holds: ``"probabilities"`` (softmax inside the model) or ``"logits"``
    (the device applies ``softmax(logits / temperature)``)."""
    temperature: float = 1.0
    """Calibration temperature (Guo et al. 2017, "On calibration of modern neural networks", ICML),
    fitted on held-out corpora; applied to logits before the softmax."""
    unsure_below: float = 0.0
    """A decision whose calibrated confidence is below this is flagged ``unsure`` (derived from
    held-out data by the trainer; 0 = never)."""

    @property
    def model_id(self) -> str:
        """``name@sha256prefix``, the ``model`` field of every event."""
        return f"{self.name}@{self.sha256[:SHA256_PREFIX_CHARS]}"

    def use_summary(self) -> str:
        """One line on what the model may be used for (its model card, as ``ser-edge info`` prints it),
        from ``training.use`` (the terms the model inherits, in words) and ``training.corpora`` (a list
        of objects ``{"kind", "name", "language", "licence", "use", ...}``, one per training corpus):

        ``research and non-commercial use only: ... (RAVDESS CC BY-NC-SA 4.0; CREMA-D ODbL 1.0 ...)``.

        A manifest without these fields (older fits) gives ``licence: not stated in the manifest``;
        a corpus without a licence is listed as ``NAME licence not stated``. Never raises: the
        manifest's ``training`` is free-form provenance.
        """
        training = self.training if isinstance(self.training, dict) else {}
        use = training.get("use")
        use = use.strip() if isinstance(use, str) and use.strip() else None
        corpora = training.get("corpora")
        terms = []
        for corpus in corpora if isinstance(corpora, list) else []:
            if not isinstance(corpus, dict):
                continue
            name = corpus.get("name") or corpus.get("kind")
            licence = corpus.get("licence")
            if isinstance(name, str) and name:
                terms.append(f"{name} {licence}" if isinstance(licence, str) and licence
                             else f"{name} licence not stated")
        if use is None and not any("licence not stated" not in term for term in terms):
            return LICENCE_NOT_STATED
        return f"{use or LICENCE_NOT_STATED}" + (f" (training corpora: {'; '.join(terms)})" if terms else "")

    def to_dict(self) -> dict:
        return {
            "schema": self.schema,
            "name": self.name,
            "model_file": self.model_file,
            "sha256": self.sha256,
            "labels": list(self.labels),
            "label_scheme": self.label_scheme,
            "features": self.features.to_dict(),
            "input": {
                "frames": self.input.frames,
                "coefficients": self.input.coefficients,
                "window_s": self.input.window_s,
            },
            "training": self.training,
            "metrics": self.metrics,
            **({"dimensions": list(self.dimensions)} if self.dimensions else {}),
            "output": self.output,
            "calibration": {"temperature": self.temperature, "unsure_below": self.unsure_below},
        }

    def write(self, path: str | Path) -> None:
        """Write as indented JSON (UTF-8) to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict, source: str = "manifest") -> ModelManifest:
        """Validate and build. Raises :class:`ManifestError` naming the field and both values."""
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: expected a JSON object, got {type(data).__name__}")
        schema = data.get("schema")
        if schema != SCHEMA_VERSION:
            raise ManifestError(f"{source}: unknown manifest schema: expected {SCHEMA_VERSION}, got {schema!r}")
        required = ("name", "model_file", "sha256", "labels", "label_scheme", "features", "input")
        missing = [key for key in required if key not in data]
        if missing:
            raise ManifestError(f"{source}: missing field(s): {', '.join(missing)}")
        labels = data["labels"]
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) and x for x in labels)
            or len(set(labels)) != len(labels)
        ):
            raise ManifestError(f"{source}: labels: expected a list of distinct non-empty strings, got {labels!r}")
        try:
            features = FeatureParams.from_dict(data["features"])
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"{source}: features: {exc}") from None
        if not features.mean:
            raise ManifestError(f"{source}: features: expected mean/std normalisation statistics, got none")
        spec = data["input"]
        try:
            input_spec = InputSpec(int(spec["frames"]), int(spec["coefficients"]), float(spec["window_s"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{source}: input: expected frames, coefficients, window_s, got {spec!r} ({exc})") from None
        if input_spec.coefficients != features.n_features:
            raise ManifestError(
                f"{source}: input shape does not match the feature parameters: input.coefficients "
                f"{input_spec.coefficients} != {features.n_features} (features.n_mfcc"
                f"{f' + {len(PITCH_FEATURES)} pitch features' if features.pitch else ''})"
            )
        expected_window_s = features.frame_end_s(input_spec.frames - 1)
        if input_spec.frames < 1 or not math.isclose(input_spec.window_s, expected_window_s, abs_tol=features.hop_s):
            raise ManifestError(
                f"{source}: input shape does not match the feature parameters: {input_spec.frames} frames "
                f"cover {expected_window_s:.3f} s, manifest says window_s {input_spec.window_s}"
            )
        sha = data["sha256"]
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise ManifestError(f"{source}: sha256: expected 64 lowercase hex digits, got {sha!r}")
        dimensions = data.get("dimensions", [])
        if not isinstance(dimensions, list) or not all(isinstance(d, str) and d for d in dimensions):
            raise ManifestError(f"{source}: dimensions: expected a list of names, got {dimensions!r}")
        output = data.get("output", "probabilities")
        if output not in OUTPUT_KINDS:
            raise ManifestError(f"{source}: output: expected one of {', '.join(OUTPUT_KINDS)}, got {output!r}")
        calibration = data.get("calibration", {})
        if not isinstance(calibration, dict):
            raise ManifestError(f"{source}: calibration: expected an object, got {calibration!r}")
        temperature = calibration.get("temperature", 1.0)
        unsure_below = calibration.get("unsure_below", 0.0)
        if not (isinstance(temperature, int | float) and math.isfinite(temperature) and 0.05 <= temperature <= 20):
            raise ManifestError(f"{source}: calibration.temperature: expected a number in 0.05..20, got {temperature!r}")
        if not (isinstance(unsure_below, int | float) and 0 <= unsure_below <= 1):
            raise ManifestError(f"{source}: calibration.unsure_below: expected a number in 0..1, got {unsure_below!r}")
        return cls(
            name=str(data["name"]),
            model_file=str(data["model_file"]),
            sha256=sha,
            labels=tuple(labels),
            label_scheme=str(data["label_scheme"]),
            features=features,
            input=input_spec,
            training=dict(data.get("training", {})),
            metrics=dict(data.get("metrics", {})),
            schema=schema,
            dimensions=tuple(dimensions),
            output=output,
            temperature=float(temperature),
            unsure_below=float(unsure_below),
        )


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_paths(path: str | Path) -> tuple[Path, Path]:
    """``(tflite_path, json_path)`` for a path given as ``NAME.tflite``, ``NAME.json`` or ``NAME``."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".tflite", ".json") else path
    return base.with_suffix(".tflite"), base.with_suffix(".json")


def load_manifest(path: str | Path) -> ModelManifest:
    """Read and validate the manifest for ``path`` (``NAME.json``, ``NAME.tflite`` or ``NAME``).

    Does not look at the .tflite (see :func:`edge.model.load_model` for the full check).
    Raises :class:`ManifestError` for a missing, unreadable or invalid manifest.
    """
    _, json_path = resolve_paths(path)
    try:
        text = json_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"model manifest not found: {json_path}") from None
    except OSError as exc:
        raise ManifestError(f"cannot read model manifest {json_path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{json_path}: not valid JSON ({exc})") from None
    return ModelManifest.from_dict(data, source=str(json_path))
