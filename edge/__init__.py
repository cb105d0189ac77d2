"""ser-edge device side: streaming MFCC, int8 TFLite emotion model, MQTT events.

Nothing in this package imports ``trainer`` or TensorFlow.
"""

__version__ = "0.1.0"
