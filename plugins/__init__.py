"""Built-in plugins: backbones, croppers and fusions, registered through the public hooks."""
