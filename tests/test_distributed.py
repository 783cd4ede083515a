"""The distributed paths on CPU: Ray Data batch prediction on a local one-node cluster, and the
transformer trainer under a 2-process gloo DDP launch (torchrun)."""

from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_map_batches_over_parquet_shards(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import TINY_DOCS
    from patentcpc.distributed import predict_parquet_ray
    from patentcpc.kinds.linear.model import LinearCPCModel

    LinearCPCModel.fit([t for t, _ in TINY_DOCS] * 2, [[c] for _, c in TINY_DOCS] * 2).save(tmp_path / "m")
    shards = tmp_path / "in"
    shards.mkdir()
    for s in range(2):
        rows = [{"id": f"{s}-{i}", "text": t} for i, (t, _) in enumerate(TINY_DOCS)]
        pq.write_table(pa.Table.from_pylist(rows), shards / f"part-{s}.parquet")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        n = predict_parquet_ray(tmp_path / "m", str(shards), tmp_path / "out", top_k=2, num_actors=1, batch_rows=5)
        out = pq.read_table(tmp_path / "out").to_pylist()
    finally:
        ray.shutdown()
    assert n == len(out) == 2 * len(TINY_DOCS)
    by_id = {r["id"]: r for r in out}
    assert json.loads(by_id["0-3"]["predictions_json"])[0]["code"] == "H01L"
    assert json.loads(by_id["1-0"]["labels"]) == [TINY_DOCS[0][1]]  # above threshold: the document's own code


DDP_SCRIPT = """
import json, os, sys
from transformers import TrainerCallback
from patentcpc.config import TrainConfig, resolve
from patentcpc.registry import train_model

class Record(TrainerCallback):
    def on_train_end(self, args, state, control, **kw):
        import torch.distributed as dist
        info = {"rank": int(os.environ["RANK"]), "world_size": args.world_size,
                "backend": dist.get_backend() if dist.is_initialized() else None, "steps": state.global_step}
        with open(os.path.join(sys.argv[3], f"rank{info['rank']}.json"), "w") as fh:
            json.dump(info, fh)

cfg = resolve(TrainConfig, None, {"transformer": {"arch": "bert-tiny"}},
              ["transformer.epochs=1", "transformer.batch_size=4", "transformer.max_length=32",
               "transformer.eval_batch_size=8", "transformer.head_init=prior", "transformer.refit_head=false"])
train_model(cfg, sys.argv[1], None, sys.argv[2], callbacks=[Record()])
"""


@pytest.mark.slow
def test_two_process_gloo_ddp_training(tiny_jsonl, tmp_path):
    """The real training entry point under torchrun with 2 CPU processes (gloo): both ranks train
    the same steps, only rank 0 writes the model folder, and the folder loads. A BERT encoder (its
    unused pooler once broke DDP; test_trainer's DDP test covers ModernBERT through the CLI)."""
    import os
    import subprocess
    import sys

    import patentcpc

    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1",
           "PATENTCPC_PROGRESS": "0", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
           str(tiny_jsonl), str(tmp_path / "model"), str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["backend"] for r in ranks] == ["gloo", "gloo"]
    assert ranks[0]["steps"] == ranks[1]["steps"] > 0
    model = patentcpc.load_model(tmp_path / "model")
    assert model.kind == "transformer" and model.predict(["plough tines for soil"], top_k=2)[0]
