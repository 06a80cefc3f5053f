"""The torch-free runtime: the exported model through onnxruntime, and the recognizer factory."""
