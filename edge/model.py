"""The int8 TFLite emotion model and its interpreter.

The interpreter comes from ``ai-edge-litert`` (LiteRT, numpy 2, 64-bit) or, where that has no
wheel (32-bit Raspberry Pi OS), from ``tflite-runtime``; :data:`INTERPRETER` says which.
Quantisation scale and zero point are read from the interpreter, never from configuration
(as TFLite Micro's micro_speech ``evaluate.py``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edge.calibration import softmax
from edge.dsp.normalize import normalize
from edge.manifest import ManifestError, ModelManifest, load_manifest, resolve_paths, sha256_file

logger = logging.getLogger(__name__)


# The armv7l tflite-runtime wheel (32-bit Raspberry Pi OS, the `legacy` extra) turns on the CPU's
# flush-to-zero for the whole process when it loads. numpy then finds the smallest subnormal float to be
# zero and warns so ("The value of the smallest subnormal for <class 'numpy.float32'> type is zero.") on
# every replay. Denormals (below 1.2e-38) mean nothing to 16-bit audio or to an int8 model, so that one
# warning is silenced; the streaming == batch tests allow for the flushed denormals.
warnings.filterwarnings("ignore", message=r"The value of the smallest subnormal for .* type is zero",
                        category=UserWarning)

RUNTIME_INFO_PREFIXES = ("INFO: Created TensorFlow Lite", "INFO: Initialized TensorFlow Lite runtime")
"""What the TFLite runtime's C++ code prints, unformatted, on stderr for every interpreter it creates
(``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``); :func:`runtime_stderr_to_log` turns it
into a DEBUG log record. Neither runtime has a switch for it (``TF_CPP_MIN_LOG_LEVEL`` is TensorFlow's,
not LiteRT's: tested with ai-edge-litert 2.3.0)."""


@contextlib.contextmanager
def runtime_stderr_to_log():
    """Capture file descriptor 2 (what C++ code writes; Python's ``sys.stderr`` too) while the block runs.

    Afterwards the runtime's :data:`RUNTIME_INFO_PREFIXES` lines go to the log at DEBUG and anything else
    is written back to stderr unchanged (an error from the runtime, or a log line another thread wrote
    meanwhile), so nothing is lost. Without a temporary file to capture into, nothing is captured.
    """
    try:
        capture = tempfile.TemporaryFile()
    except OSError:
        yield
        return
    with capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = []
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if line.startswith(RUNTIME_INFO_PREFIXES):
                    logger.debug("TFLite runtime: %s", line.strip())
                else:
                    kept.append(line)
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _import_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, f"tflite-runtime {importlib.metadata.version('tflite-runtime')}"
    except ImportError:
        return None, ("none (install ai-edge-litert; on 32-bit Raspberry Pi OS, ser-edge[legacy] for tflite-runtime, "
                      "with pip run under setarch linux32)")


Interpreter, INTERPRETER = _import_interpreter()


class ModelError(ValueError):
    """A model file that is missing, corrupt, or does not match its manifest. One-line message."""


class EmotionModel:
    """An int8 TFLite classifier with its manifest.

    Build with :func:`load_model`. :meth:`score` takes normalised MFCC windows (the caller owns the
    normalisation: :class:`edge.dsp.normalize.AdaptiveNormalizer`) and returns label probabilities
    (calibration, :func:`temperature_scale`, is applied by the pipeline to each utterance's mean) and, when the manifest lists ``dimensions``, their values (arousal, valence).
    :meth:`predict` takes raw windows and normalises them with the manifest's fixed statistics.
    The interpreter's input quantisation and output dequantisation happen inside.
    """

    def __init__(self, interpreter, manifest: ModelManifest, path: Path) -> None:
        self.manifest = manifest
        self.path = path
        self.labels = manifest.labels
        self._interpreter = interpreter
        self._input = interpreter.get_input_details()[0]
        outputs = interpreter.get_output_details()
        n_labels = len(manifest.labels)
        # outputs are told apart by size (the manifest guarantees len(dimensions) != len(labels))
        self._output = next(o for o in outputs if int(np.prod(o["shape"][1:])) == n_labels)
        self._dims_output = next((o for o in outputs if o is not self._output), None)
        self._in_scale, self._in_zero = self._input["quantization"]
        self._in_info = np.iinfo(self._input["dtype"]) if self._input["dtype"] != np.float32 else None

    @property
    def input_frames(self) -> int:
        return self.manifest.input.frames

    @property
    def input_dtype(self) -> np.dtype:
        """The input tensor's dtype (int8 for the full-integer models the trainer writes)."""
        return np.dtype(self._input["dtype"])

    @property
    def output_dtype(self) -> np.dtype:
        return np.dtype(self._output["dtype"])

    def quantize(self, normalized: np.ndarray) -> np.ndarray:
        """float32 ``(frames, coefficients)`` -> the input tensor's dtype: ``round(x / scale) + zero_point``, saturated."""
        if self._in_info is None:
            return normalized.astype(np.float32)
        q = np.round(normalized / self._in_scale) + self._in_zero
        return np.clip(q, self._in_info.min, self._in_info.max).astype(self._input["dtype"])

    @staticmethod
    def _dequantize(raw: np.ndarray, detail: dict) -> np.ndarray:
        """Output tensor -> float32: ``(q - zero_point) * scale`` (as is for a float output)."""
        if detail["dtype"] == np.float32:
            return raw.astype(np.float32)
        scale, zero = detail["quantization"]
        return ((raw.astype(np.float32) - zero) * scale).astype(np.float32)

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        """Label output tensor -> float32 values (probabilities or logits, as the manifest's ``output``)."""
        return self._dequantize(raw, self._output)

    def score(self, normalized: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (and dimensions) for normalised windows, before calibration.

        ``normalized``: float32 ``(n, frames, coefficients)``. Returns float32 ``(n, n_labels)``
        (``softmax(logits)`` for a logits model, else the model's probabilities) and
        float32 ``(n, n_dimensions)`` clipped to [-1, 1], or ``None`` without dimensions.
        Raises ``ValueError`` for windows of the wrong shape.
        """
        expected = (self.manifest.input.frames, self.manifest.input.coefficients)
        if normalized.ndim != 3 or normalized.shape[1:] != expected:
            raise ValueError(f"expected windows of shape (n, {expected[0]}, {expected[1]}), got {normalized.shape}")
        raw = np.empty((normalized.shape[0], len(self.labels)), dtype=np.float32)
        dims = None if self._dims_output is None else np.empty(
            (normalized.shape[0], int(np.prod(self._dims_output["shape"][1:]))), dtype=np.float32)
        for i, window in enumerate(normalized):
            self._interpreter.set_tensor(self._input["index"], self.quantize(window)[None])
            self._interpreter.invoke()
            raw[i] = self.dequantize(self._interpreter.get_tensor(self._output["index"])[0])
            if dims is not None:
                dims[i] = self._dequantize(self._interpreter.get_tensor(self._dims_output["index"])[0], self._dims_output)
        probabilities = softmax(raw) if self.manifest.output == "logits" else raw
        return probabilities, (None if dims is None else np.clip(dims, -1.0, 1.0))

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Class probabilities for raw MFCC windows normalised with the manifest's fixed statistics.

        ``windows``: float32 ``(n, frames, coefficients)`` or ``(frames, coefficients)`` of raw
        MFCCs (as :func:`edge.dsp.features.mfcc` returns them). Returns float32 ``(n, n_labels)``
        (or ``(n_labels,)``), columns in :attr:`labels` order.
        Raises ``ValueError`` for a window of the wrong shape.
        """
        single = windows.ndim == 2
        batch = windows[None] if single else windows
        expected = (self.manifest.input.frames, self.manifest.input.coefficients)
        if batch.ndim != 3 or batch.shape[1:] != expected:
            raise ValueError(f"expected windows of shape (n, {expected[0]}, {expected[1]}), got {windows.shape}")
        out = self.score(normalize(batch, self.manifest.features))[0]
        return out[0] if single else out


def load_model(path: str | Path, num_threads: int = 1) -> EmotionModel:
    """Load ``NAME.tflite`` with ``NAME.json`` (``path`` may name either, or ``NAME``).

    Checks, each failing with one line that names both values: the manifest's schema and fields
    (:class:`~edge.manifest.ManifestError`), the sha256 of the .tflite against the manifest, that
    the interpreter can load it, that the input is ``(1, frames, coefficients)`` as the manifest
    says, and that the output has one value per label (:class:`ModelError`).
    """
    tflite_path, json_path = resolve_paths(path)
    manifest = load_manifest(json_path)
    if manifest.model_file != tflite_path.name:
        raise ManifestError(
            f"{json_path}: manifest for another model: model_file {manifest.model_file!r}, "
            f"expected {tflite_path.name!r}"
        )
    if not tflite_path.is_file():
        raise ModelError(f"model file not found: {tflite_path}")
    actual_sha = sha256_file(tflite_path)
    if actual_sha != manifest.sha256:
        raise ModelError(
            f"{tflite_path}: sha256 mismatch: file has {actual_sha[:16]}…, manifest {json_path.name} "
            f"expects {manifest.sha256[:16]}…"
        )
    if Interpreter is None:
        raise ModelError(f"no TFLite interpreter installed: {INTERPRETER}")
    try:
        with runtime_stderr_to_log():
            interpreter = Interpreter(model_path=str(tflite_path), num_threads=num_threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{tflite_path}: not a loadable TFLite model ({first_line})") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    n_expected_outputs = 1 + bool(manifest.dimensions)
    if len(inputs) != 1 or len(outputs) != n_expected_outputs:
        raise ModelError(f"{tflite_path}: expected 1 input and {n_expected_outputs} output(s) (labels"
                         f"{', dimensions' if manifest.dimensions else ''}), got {len(inputs)} and {len(outputs)}")
    if manifest.dimensions and len(manifest.dimensions) == len(manifest.labels):
        raise ModelError(f"{tflite_path}: expected fewer dimensions than labels, got {len(manifest.dimensions)}")
    expected_input = [1, manifest.input.frames, manifest.input.coefficients]
    actual_input = [int(n) for n in inputs[0]["shape"]]
    if actual_input != expected_input:
        raise ModelError(
            f"{tflite_path}: input shape {actual_input} does not match the manifest's "
            f"{expected_input} (input.frames, input.coefficients)"
        )
    sizes = sorted(int(np.prod(o["shape"][1:])) for o in outputs)
    expected_sizes = sorted([len(manifest.labels)] + ([len(manifest.dimensions)] if manifest.dimensions else []))
    if sizes != expected_sizes:
        raise ModelError(
            f"{tflite_path}: output sizes {sizes} do not match the manifest's {len(manifest.labels)} labels"
            + (f" and {len(manifest.dimensions)} dimensions" if manifest.dimensions else "")
        )
    logger.info(
        "loaded model %s (%d labels, input %s %s) with %s",
        manifest.model_id, len(manifest.labels), expected_input, np.dtype(inputs[0]["dtype"]).name, INTERPRETER,
    )
    return EmotionModel(interpreter, manifest, tflite_path)
