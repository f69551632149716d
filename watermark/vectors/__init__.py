"""Published test vectors of the watermark schemes (JSON files next to this module)."""
