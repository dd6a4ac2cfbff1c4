"""Code generation tools for losant_async."""
