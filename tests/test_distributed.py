"""Ray Data batch prediction on a local single-node cluster (skipped without Ray)."""

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
    from patentcpc.models.linear import LinearCPCModel

    LinearCPCModel.fit([t for t, _ in TINY_DOCS] * 2, [[c] for _, c in TINY_DOCS] * 2).save(tmp_path / "m")
    shards = tmp_path / "in"
    shards.mkdir()
    for s in range(2):
        rows = [{"id": f"{s}-{i}", "text": t} for i, (t, _) in enumerate(TINY_DOCS)]
        pq.write_table(pa.Table.from_pylist(rows), shards / f"part-{s}.parquet")
    try:
        n = predict_parquet_ray(tmp_path / "m", str(shards), tmp_path / "out", top_k=2, num_actors=1, batch_rows=5)
        out = pq.read_table(tmp_path / "out").to_pylist()
    finally:
        ray.shutdown()
    assert n == len(out) == 2 * len(TINY_DOCS)
    by_id = {r["id"]: r for r in out}
    assert json.loads(by_id["0-3"]["predictions_json"])[0]["code"] == "H01L"
