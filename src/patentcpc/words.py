"""The words of the TF-IDF models (``tfidf``, ``scheme``, Omikuji): scikit-learn's token pattern and
accent stripping, an optional Snowball stemmer (PyStemmer) and the weight of a text's first line
(its title), which every training and prediction path applies the same way (``linear.stemmer``,
``linear.title_weight``; the model folder records both)."""

from __future__ import annotations

import functools
import re
import unicodedata

TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default
_TOKEN_RE = re.compile(TOKEN_PATTERN)
MAX_TITLE_WEIGHT = 100  # linear.title_weight's ceiling
# A first line longer than this is not a title (a US patent's title has at most 500 characters,
# 37 CFR 1.72(a)): it is counted once, which also bounds the repeated terms of any text.
MAX_TITLE_CHARS = 500


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


class WordAnalyzer:
    """The terms a TF-IDF model counts in a raw text, for ``TfidfVectorizer(analyzer=...)`` and the
    stored models' NumPy transform alike: lower-cased, accents stripped, :class:`WordTokenizer`'s
    words (stemmed), their n-grams from 1 to ``ngram_max``; with ``title_weight`` w > 1 the terms
    of the text's first line (the title of a ``title\\nabstract`` text) are counted w times (an
    n-gram across the line break once). A text of one line has no title, and a first line of more
    than :data:`MAX_TITLE_CHARS` characters is none: their terms count once.
    With w = 1 the terms are scikit-learn's word analyzer's. Copies and pickles by its settings."""

    def __init__(self, stemmer: str | None = None, ngram_max: int = 1, title_weight: int = 1):
        self.stemmer, self.ngram_max, self.title_weight = stemmer, int(ngram_max), int(title_weight)
        self.tokenize = WordTokenizer(stemmer)

    def ngrams(self, tokens: list[str]) -> list[str]:
        if self.ngram_max == 1:
            return tokens
        out = list(tokens)
        for n in range(2, min(self.ngram_max, len(tokens)) + 1):
            out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        return out

    def __call__(self, text: str) -> list[str]:
        # a line break is no word character: the text's words are its first line's, then the rest's
        title, _, rest = strip_accents(text.lower()).partition("\n")
        head = self.tokenize(title)
        terms = self.ngrams(head + self.tokenize(rest))
        if self.title_weight > 1 and rest and not rest.isspace() and len(title.strip()) <= MAX_TITLE_CHARS:
            terms += self.ngrams(head) * (self.title_weight - 1)
        return terms

    def __getstate__(self) -> dict:
        return {"stemmer": self.stemmer, "ngram_max": self.ngram_max, "title_weight": self.title_weight}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["stemmer"], state["ngram_max"], state["title_weight"])

    def __repr__(self) -> str:
        return f"WordAnalyzer({self.stemmer!r}, ngram_max={self.ngram_max}, title_weight={self.title_weight})"
