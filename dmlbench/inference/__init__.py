"""Use a trained run: embed images (`embed`), export the embedder (`export`), build and query a faiss index
(`index`, `search`).

Importing this package is cheap; torch, faiss, onnx and PIL are imported by the functions that need them.
Modules: `images` (the user's images and the run's preprocessing), `embed` (embeddings and the embeddings
file), `export` (ONNX / TorchScript files and their parity check), `index` (faiss indexes and search).
"""
