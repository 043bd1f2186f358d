"""Preprocessing: building set labels from raw annotations."""

__all__: list[str] = []
