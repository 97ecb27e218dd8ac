"""Model bundles (safetensors + manifest) and model registries (local, Hugging Face Hub)."""
