"""The checks that ship with :mod:`safety` (see :data:`safety.registry.KNOWN_CHECKS`)."""
