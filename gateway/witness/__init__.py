"""A standalone c2sp.org/tlog-witness witness: `tiergate log witness serve`."""
