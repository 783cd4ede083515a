"""The training machinery shared by the model kinds (each kind's own trainer is in its package,
:mod:`patentcpc.kinds`; :func:`patentcpc.registry.train_model` picks it):

- :mod:`~patentcpc.training.finetune`: the fine-tuning loop (:class:`~patentcpc.training.finetune.Trainer`)
  of the encoder + head kinds (``transformer``, ``causal_lm``), built with the kind's model factory;
- :mod:`~patentcpc.training.head`: probe start, WiSE-FT, head re-fit;
- :mod:`~patentcpc.training.batches`: tokenized datasets, collation, label matrices;
- :mod:`~patentcpc.training.checkpoints`: the run folder, checkpoints, ``--resume``, logs;
- :mod:`~patentcpc.training.guard`: the check before saving, timed phases.
"""
