"""Machinery of the watermark library; nothing here is public API."""
