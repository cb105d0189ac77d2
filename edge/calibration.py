"""Calibration of the model's probabilities: softmax with a temperature, and temperature scaling of
probabilities (Guo et al. 2017, "On calibration of modern neural networks", ICML). The temperature
comes from the manifest (``ser-train calibrate``); the pipeline applies it to each utterance's
averaged probabilities.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``exp(z / T) / sum(exp(z / T))`` over the last axis, computed stably; float32, same shape."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def temperature_scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities ``softmax(log(p) / T)`` over the last axis (for ``p = softmax(z)`` this is
    ``softmax(z / T)``, the temperature scaling of Guo et al. 2017); float32, same shape. ``T == 1`` is
    the identity."""
    if temperature == 1.0:
        return np.asarray(probabilities, dtype=np.float32)
    return softmax(np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), 1e-12)), temperature)
