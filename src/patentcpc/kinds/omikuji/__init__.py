"""TF-IDF + Omikuji label trees: what ``--model tfidf`` trains with ``linear.learner: omikuji`` (or
``auto`` on large label sets), so it is trained by the linear kind's trainer and has no ``--model``
name of its own. Reuses :mod:`patentcpc.kinds.linear` (the vectorizer and calibration)."""

from patentcpc.registry import Kind

KIND = Kind(
    name="omikuji",
    model="patentcpc.kinds.omikuji.model:OmikujiCPCModel",
    config=("data", "linear", "calibration", "explain"),
    capabilities={"explain_index": True, "member": True},
    progress=False,  # seconds to minutes, no bar of its own
    description="TF-IDF + Omikuji (Parabel/Bonsai-style) label trees",
)
