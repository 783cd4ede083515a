"""A nearest-centroid model kind for patentcpc, from a package of its own.

patentcpc finds :data:`KIND` through the ``patentcpc.kinds`` entry point in ``pyproject.toml``;
then ``patentcpc train --model centroid`` trains one with :mod:`.trainer`, and every command that
loads a model folder whose manifest says ``"kind": "centroid"`` loads it with :mod:`.model`.
This module only declares (strings, no import of numpy or scikit-learn): it is imported whenever
patentcpc lists its kinds.
"""

from patentcpc.registry import Kind

KIND = Kind(
    name="centroid",  # the manifest's "kind"
    names=("centroid",),  # the --model values that select it
    model="patentcpc_centroid.model:CentroidCPCModel",
    trainer="patentcpc_centroid.trainer:train_centroid",
    config=("data", "calibration", "options"),  # the TrainConfig sections it reads (saved with the model)
    capabilities={},  # "train" comes with the trainer; no resume, ONNX export, ensemble membership, ...
    progress=False,  # no progress bar of its own: the CLI shows a spinner
    package="patentcpc-centroid",  # named by the error when a folder of this kind is loaded without it
    description="TF-IDF nearest centroid: cosine similarity of a text to each label's mean training document",
)
