"""edgepack device agent.

Runs on the device with only the Python standard library and numpy at import time; the model
runtime (onnxruntime, LiteRT, torch, OpenVINO) is imported lazily by agent.runtimes. Python >= 3.8.
The agent never imports the host-side `packager`.
"""
__version__ = "0.1.0"

# Highest bundle manifest schema this agent understands.
SCHEMA_VERSION = 1
