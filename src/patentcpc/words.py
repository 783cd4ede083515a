"""The words of the TF-IDF models (``tfidf``, ``scheme``, Omikuji): scikit-learn's token pattern and
accent stripping, and an optional Snowball stemmer (PyStemmer) that every training and prediction
path applies the same way (``linear.stemmer``; the model folder records it)."""

from __future__ import annotations

import functools
import re
import unicodedata

TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default
_TOKEN_RE = re.compile(TOKEN_PATTERN)


@functools.cache
def stemmer_names() -> tuple[str, ...]:
    """The Snowball algorithms PyStemmer offers (``english``, ``german``, ...), sorted."""
    import Stemmer

    return tuple(sorted(Stemmer.algorithms()))


def known_stemmer(name: object) -> bool:
    """Whether ``name`` is None (no stemmer) or a Snowball algorithm of this install."""
    return name is None or (isinstance(name, str) and name in stemmer_names())


def strip_accents(s: str) -> str:
    """scikit-learn's ``strip_accents_unicode``."""
    if s.isascii():
        return s
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


class WordTokenizer:
    """The words of an already lower-cased, accent-stripped text: scikit-learn's token pattern,
    then the Snowball ``stemmer`` (None: the words as they are). A plain callable for
    ``TfidfVectorizer(tokenizer=...)`` that copies and pickles by its stemmer's name."""

    def __init__(self, stemmer: str | None = None):
        self.stemmer = stemmer
        self._stem = None

    def __call__(self, text: str) -> list[str]:
        tokens = _TOKEN_RE.findall(text)
        if self.stemmer is None:
            return tokens
        if self._stem is None:
            import Stemmer

            self._stem = Stemmer.Stemmer(self.stemmer)
        return self._stem.stemWords(tokens)

    def __getstate__(self) -> dict:
        return {"stemmer": self.stemmer}

    def __setstate__(self, state: dict) -> None:
        self.stemmer, self._stem = state["stemmer"], None

    def __repr__(self) -> str:
        return f"WordTokenizer({self.stemmer!r})"
