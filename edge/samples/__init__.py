"""The demo (``python -m edge.samples.demo``, ``make demo``) and its audio: real CREMA-D clips in
``crema-d/`` (see its ATTRIBUTION.md) and the synthetic ``speech-sample.wav``; installed with the package."""
