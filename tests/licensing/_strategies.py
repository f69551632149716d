"""Hypothesis strategies and small helpers shared by the licensing tests."""

from __future__ import annotations

from hypothesis import strategies as st

from licensing.canonical import MAX_SAFE_INTEGER

# Text without lone surrogates: exactly what valid UTF-8 JSON can carry.
json_text = st.text(st.characters(codec="utf-8"), max_size=20)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | json_text
)

json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(json_text, children, max_size=5)
    ),
    max_leaves=25,
)
