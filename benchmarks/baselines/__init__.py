"""Reference servers written only for comparison."""
