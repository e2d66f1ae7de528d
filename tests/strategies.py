"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

import sys
import unicodedata

from hypothesis import strategies as st

# Characters assigned in this interpreter's Unicode tables (14.0 on Python 3.11), excluding
# surrogates. Code points assigned later may be classified differently by Python, the `regex`
# module and Rust (each ships its own Unicode version): that is version skew, not a tokenizer
# difference, so the property tests stay within Python's tables.
assigned_chars = st.characters(
    codec="utf-8", exclude_categories=("Cn", "Cs"), max_codepoint=sys.maxunicode
).filter(lambda c: unicodedata.category(c) != "Cn")

# Mixed with the separators and punctuation the tokenizers care about, and capital sigma, which
# Python lowercases by its neighbours (the final-sigma rule).
special_chars = st.sampled_from(list(" \t\n\r\x0b\x0c\x00\x1c\xa0.,'-_$😀ΣΑ"))
texts = st.text(alphabet=st.one_of(assigned_chars, special_chars))
