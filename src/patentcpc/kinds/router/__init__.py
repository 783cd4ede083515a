"""Two members and a routing threshold (``--model router``): documents the first member is unsure of go
to the second (e.g. TF-IDF, then an LLM). :mod:`.model`, :mod:`.trainer`; members go through
:mod:`patentcpc.registry`."""

from patentcpc.registry import Kind

KIND = Kind(
    name="router",
    names=("router",),
    model="patentcpc.kinds.router.model:RouterCPCModel",
    trainer="patentcpc.kinds.router.trainer:train_router",
    config=("data", "router", "linear", "transformer", "llm", "lora", "calibration"),
    capabilities={"device": True},
    description="the first member, or the second for the documents the first is unsure of",
)
