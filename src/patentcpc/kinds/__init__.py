"""The model kinds, one package each: its model class (``model.py``), its trainer (``trainer.py``)
and its declaration (``KIND`` in the package's ``__init__.py``, a :class:`patentcpc.registry.Kind`).
Third-party kinds register the same declaration through the ``patentcpc.kinds`` entry-point group.
Ask :mod:`patentcpc.registry`, never a kind package directly, which kind a model is or what it can do.
"""
