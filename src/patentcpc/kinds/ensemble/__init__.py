"""Ensembles of any member kinds (``--model ensemble --members a,b``): :mod:`.model` (weighted,
calibrated combination; members are model folders inside it), :mod:`.trainer` (cross-fitted member
outputs -> weights), :mod:`.neighbours` (the encoder members' neighbour vote). A stopped run keeps
its finished members in ``.<output>.ensemble-work/``; the next run of the same data and configuration
(``--resume`` or not) reuses them. Members are trained
and loaded through :mod:`patentcpc.registry`, never by importing another kind."""

from patentcpc.registry import Kind

KIND = Kind(
    name="ensemble",
    names=("ensemble",),
    model="patentcpc.kinds.ensemble.model:EnsembleCPCModel",
    trainer="patentcpc.kinds.ensemble.trainer:train_ensemble",
    config=("data", "ensemble", "calibration", "explain", "linear", "transformer", "llm", "lora"),
    capabilities={"resume": True, "explain_index": True, "member": True, "device": True},
    description="a calibrated weighted combination of member models",
)
