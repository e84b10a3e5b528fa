"""Export to ONNX and the Triton model repository."""
