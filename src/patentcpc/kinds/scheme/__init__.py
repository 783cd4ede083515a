"""The cold-start kind (``--model scheme``): the linear kind trained on the IPC scheme's own text, no
labelled patents needed. Reuses :mod:`patentcpc.kinds.linear` (its model class and trainer)."""

from patentcpc.registry import Kind

KIND = Kind(
    name="scheme",
    names=("scheme",),
    model="patentcpc.kinds.scheme.model:SchemeCPCModel",
    trainer="patentcpc.kinds.linear.trainer:train_linear",
    config=("data", "linear", "calibration"),
    capabilities={"member": True},
    needs_data=False,
    progress=False,  # seconds to minutes, no bar of its own
    description="linear model trained on the IPC scheme's titles (cold start)",
)
