"""Running outside PyTorch: the token-pass ONNX stage graphs and ONNX Runtime driving them."""
