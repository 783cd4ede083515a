"""The TF-IDF + one-vs-rest linear kind (``--model tfidf``): :mod:`.model` (the classifier and its
folder), :mod:`.trainer` (fit, out-of-fold calibration, label documents from the CPC scheme)."""

from patentcpc.registry import Kind

KIND = Kind(
    name="linear",
    names=("tfidf",),
    model="patentcpc.kinds.linear.model:LinearCPCModel",
    trainer="patentcpc.kinds.linear.trainer:train_linear",
    config=("data", "linear", "calibration", "explain"),
    capabilities={"explain_index": True, "member": True},
    progress=False,  # seconds to minutes, no bar of its own
    description="TF-IDF + one-vs-rest linear classifiers (LinearSVC or logistic regression)",
)
