"""Export of a trained model to other runtimes (ONNX for the torch-free runtime in :mod:`ambient.runtime`)."""
