"""Full-integer int8 TFLite conversion and the model manifest (``NAME.tflite`` + ``NAME.json``)."""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import warnings
from pathlib import Path

import numpy as np

from edge.dsp.features import FeatureParams
from edge.manifest import InputSpec, ModelManifest, sha256_file

logger = logging.getLogger(__name__)

REPRESENTATIVE_WINDOWS = 300


def to_int8_tflite(model, representative: np.ndarray) -> bytes:
    """Convert a Keras model to a full-integer TFLite flatbuffer: int8 weights, activations, input
    and output (``TFLITE_BUILTINS_INT8`` only), calibrated on ``representative`` normalised windows
    float32 ``(n, frames, coefficients)``. Raises whatever the TFLite converter raises.
    """
    import tensorflow as tf

    def dataset():
        for window in representative:
            yield [window[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    # Keras prints the exported SavedModel's signature (hundreds of lines) on stdout: keep it for -v only
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), warnings.catch_warnings():
        # int8 input statistics come from the representative dataset, which TFLite warns about needlessly
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        flatbuffer = converter.convert()
    logger.debug("TFLite converter output:\n%s", printed.getvalue())
    return flatbuffer


def git_commit(cwd: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the working tree, with ``-dirty`` appended when tracked trainer or
    edge files differ from it (so a model trained from uncommitted code says so), or ``"unknown"``."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, timeout=10)
        if out.returncode != 0 or not out.stdout.strip():
            return "unknown"
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "edge", "trainer"],
                                 capture_output=True, text=True, cwd=cwd, timeout=10)
    except OSError:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if changed.returncode == 0 and changed.stdout.strip() else "")


def write_model(
    out_base: Path,
    flatbuffer: bytes,
    labels: tuple[str, ...],
    label_scheme: str,
    features: FeatureParams,
    frames: int,
    training: dict | None = None,
    metrics: dict | None = None,
    dimensions: tuple[str, ...] = (),
    temperature: float = 1.0,
    unsure_below: float = 0.0,
) -> tuple[Path, Path]:
    """Write ``out_base.tflite`` and its manifest ``out_base.json``; return both paths.

    A model with ``dimensions`` (arousal, valence) outputs logits beside them (``output: logits``);
    ``temperature`` and ``unsure_below`` are its calibration (:mod:`trainer.metrics`).

    ``features`` must carry the training mean/std. The manifest's ``window_s`` is the end of the
    last input frame, ``features.frame_end_s(frames - 1)``.
    """
    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    tflite_path = out_base.with_name(out_base.name + ".tflite")
    json_path = out_base.with_name(out_base.name + ".json")
    tflite_path.write_bytes(flatbuffer)
    manifest = ModelManifest(
        name=out_base.name,
        model_file=tflite_path.name,
        sha256=sha256_file(tflite_path),
        labels=tuple(labels),
        label_scheme=label_scheme,
        features=features,
        input=InputSpec(frames=frames, coefficients=features.n_features, window_s=round(features.frame_end_s(frames - 1), 6)),
        training=training or {},
        metrics=metrics or {},
        dimensions=tuple(dimensions),
        output="logits" if dimensions else "probabilities",
        temperature=temperature,
        unsure_below=unsure_below,
    )
    manifest.write(json_path)
    return tflite_path, json_path
