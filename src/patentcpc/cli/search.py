"""Search commands: ``embed``, ``index build``, ``search``, ``benchmark-embeddings``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, console, out
from patentcpc.cli.options import (
    IdField,
    LabelField,
    Level,
    OnBadRow,
    Split,
    TextFields,
    check_input,
    check_model,
    data_config,
    data_options,
    report_skipped,
)
from patentcpc.errors import ConfigError

index_app = typer.Typer(help="Build search indexes (BM25 + embeddings).", no_args_is_help=True)
app.add_typer(index_app, name="index")

Model = Annotated[str | None, typer.Option(
    "--model", help="HF encoder (hub id or folder), sentence-transformers folder, arch:PRESET or lsa[:DIM].")]
Pooling = Annotated[str | None, typer.Option(
    "--pooling", help="mean, cls or last (default: the model's own; last for decoders, else mean).")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Texts per forward pass.")]
MaxLength = Annotated[int | None, typer.Option("--max-length", help="Tokens kept per text.")]
TruncateDim = Annotated[int | None, typer.Option("--truncate-dim", help="Keep the first N dimensions "
                                                                        "(Matryoshka truncation).")]
Precision = Annotated[str, typer.Option("--precision", help="Stored vectors: float32, int8 or binary.")]


def _embed_options(pooling, batch_size, max_length, normalize=True, seed=0, truncate_dim=None):
    from patentcpc.retrieval.embeddings import EmbedOptions

    return EmbedOptions(pooling=pooling, normalize=normalize, batch_size=batch_size, max_length=max_length,
                        seed=seed, truncate_dim=truncate_dim)


def _check_spec(spec: str | None, option: str = "--model") -> None:
    """A model spec that names a folder that does not exist fails at once (lsa and arch: specs,
    and hub ids, pass)."""
    if spec and not spec.startswith(("lsa", "arch:")):
        check_model(spec, option)


def _load(data, text_fields, label_field, id_field, level, on_bad_row, split, require_labels=True):
    from patentcpc.data import load_data

    cfg = data_config(**data_options(text_fields, label_field, id_field, level, on_bad_row, split))
    loaded = load_data(data, **cfg.load_kwargs(), require_labels=require_labels)
    report_skipped(loaded)
    return loaded


@app.command()
def embed(
    model: Annotated[str, typer.Option("--model", help="HF encoder, sentence-transformers folder, arch:PRESET "
                                                       "or lsa[:DIM].")],
    data: Annotated[str, typer.Option("--data", help="File, save_to_disk folder or hub dataset id.")],
    output: Annotated[Path, typer.Option("--output", help="Where to write the embeddings: .npz or .parquet.")],
    pooling: Pooling = None, batch_size: BatchSize = 32, max_length: MaxLength = None,
    normalize: Annotated[bool, typer.Option("--normalize/--no-normalize", help="L2-normalize the vectors.")] = True,
    truncate_dim: TruncateDim = None, precision: Precision = "float32",
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    level: Level = None, on_bad_row: OnBadRow = None, split: Split = None,
) -> None:
    """Embed every document (batched, length-sorted) and save the vectors with the document ids."""
    from patentcpc.io import check_output_file
    from patentcpc.retrieval.embeddings import check_suffix, embed_data, load_embedder, save_embeddings
    from patentcpc.retrieval.quantize import bytes_per_vector, check_precision, quantize

    check_suffix(output)
    check_input(data, "--data")
    _check_spec(model)
    check_output_file(output, [data, model])
    check_precision(precision)
    loaded = _load(data, text_fields, label_field, id_field, level, on_bad_row, split, require_labels=False)
    embedder = load_embedder(model, _embed_options(pooling, batch_size, max_length, normalize, 0, truncate_dim))
    vectors = embed_data(embedder, loaded.texts, progress=True)
    dim = int(vectors.shape[1])
    codes, ranges = quantize(vectors, precision)
    meta = {**embedder.describe(), "source": str(data), "text_fields": loaded.text_fields, "precision": precision,
            "dim": dim, "bytes_per_vector": bytes_per_vector(dim, precision)}
    if ranges is not None:
        meta["int8_ranges"] = ranges.tolist()
    save_embeddings(output, loaded.ids, codes, meta)
    console.print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {output}", highlight=False)


@index_app.command("build")
def index_build(
    data: Annotated[str, typer.Option("--data", help="File, save_to_disk folder or hub dataset id.")],
    output: Annotated[Path, typer.Option("--output", help="Index folder to write.")] = Path("patent-index"),
    model: Model = None, pooling: Pooling = None, batch_size: BatchSize = 32, max_length: MaxLength = None,
    truncate_dim: TruncateDim = None, precision: Precision = "float32",
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    level: Level = None, on_bad_row: OnBadRow = None, split: Split = None,
) -> None:
    """Index documents for search: BM25 always, dense embeddings when --model is given."""
    from patentcpc.io import check_output_dir
    from patentcpc.retrieval.quantize import check_precision
    from patentcpc.retrieval.search import SearchIndex

    check_input(data, "--data")
    _check_spec(model)
    check_output_dir(output, "index", [data, model])
    check_precision(precision)
    loaded = _load(data, text_fields, label_field, id_field, level, on_bad_row, split, require_labels=False)
    index = SearchIndex.build(loaded, model, _embed_options(pooling, batch_size, max_length, truncate_dim=truncate_dim),
                              progress=True, precision=precision)
    index.save(output)
    kind = "BM25 + dense" if model else "BM25"
    console.print(f"indexed {len(index.ids)} documents ({kind}, view {'+'.join(loaded.text_fields)}) in {output}",
                  highlight=False)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Free-text query.")],
    index: Annotated[Path, typer.Option("--index", help="Index folder from 'patentcpc index build'.")] = Path(
        "patent-index"),
    k: Annotated[int, typer.Option("--k", help="Results to show.")] = 10,
    mode: Annotated[str | None, typer.Option("--mode", help="bm25, dense or hybrid (default: hybrid when the "
                                                            "index has embeddings, else bm25).")] = None,
    fusion: Annotated[str, typer.Option("--fusion", help="Hybrid fusion: minmax, zscore or rrf.")] = "minmax",
    alpha: Annotated[float, typer.Option("--alpha", help="Weight of the dense score in minmax/zscore.")] = 0.7,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search an index; shows id, title, score and CPC codes."""
    from patentcpc.retrieval.search import SearchIndex, SearchOptions, hits_as_dicts, score_legend

    opts = SearchOptions(k=k, mode=mode or "hybrid", fusion=fusion, alpha=alpha)  # options checked before loading
    if not query.strip():
        raise ConfigError("the query is empty")
    idx = SearchIndex.load(index)
    mode = mode or ("hybrid" if idx.embeddings is not None else "bm25")
    opts.mode = mode
    hits = idx.search(query, opts)
    legend = score_legend(mode, fusion, alpha, opts.rrf_k)
    if as_json:
        out.print_json(json.dumps({"query": query, "mode": mode, "score": legend, "results": hits_as_dicts(hits)}))
        return
    from rich.table import Table

    table = Table(title=f"{query!r} ({mode})")
    for col in ("#", "id", "title", "score", "CPC"):
        table.add_column(col, overflow="fold")
    for h in hits:
        table.add_row(str(h.rank), h.id, h.title[:100], f"{h.score:.4f}", ", ".join(h.cpc))
    out.print(table)
    out.print(legend, highlight=False, soft_wrap=True)


@app.command("benchmark-embeddings")
def benchmark_embeddings(
    models: Annotated[str, typer.Option("--models", help="Comma-separated model specs (HF/sentence-transformers "
                                                         "folders or ids, arch:PRESET, lsa[:DIM]).")],
    data: Annotated[str, typer.Option("--data", help="Labelled file, save_to_disk folder or hub dataset id.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Where the CSV, PNG and cache go.")] = Path(
        "embedding-benchmark"),
    views: Annotated[str | None, typer.Option("--views", help="Text views, e.g. title,abstract,title+abstract "
                                                              "(default: whatever the data has).")] = None,
    qrels: Annotated[str | None, typer.Option("--qrels", help="TREC qrels (e.g. citations) instead of label "
                                                              "overlap.")] = None,
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds.")] = 5,
    knn_k: Annotated[int, typer.Option("--knn-k", help="Neighbours of kNN voting.")] = 20,
    knn_weighting: Annotated[str, typer.Option("--knn-weighting", help="uniform, similarity or softmax.")] = "softmax",
    knn_temperature: Annotated[float, typer.Option("--knn-temperature", help="Softmax temperature.")] = 0.05,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Cross-validate a linear probe too.")] = True,
    zero_shot: Annotated[str, typer.Option("--zero-shot", help="centroid, title or off.")] = "centroid",
    batch_size: BatchSize = 32,
    transfer: Annotated[str | None, typer.Option("--transfer", help="Out-of-domain labelled file: evaluated side "
                                                                    "by side with --data, changes vs --baseline.")]
    = None,
    baseline: Annotated[str | None, typer.Option("--baseline", help="Model the changes are measured against "
                                                                    "(default: the first of --models).")] = None,
    compression: Annotated[str | None, typer.Option("--compression", help="Quality vs size rows: DIM:PRECISION "
                                                                          "items, e.g. 256:float32,384:int8,binary.")]
    = None,
    report: Annotated[Path | None, typer.Option("--report", help="Transfer report file, .md or .json (default: "
                                                                 "OUTPUT_DIR/transfer_report.md and .json).")] = None,
    label_field: LabelField = None, id_field: IdField = None, level: Level = None, on_bad_row: OnBadRow = None,
    split: Split = None,
) -> None:
    """Retrieval, classification and clustering for each model and text view: table, CSV and PNG.
    With --transfer: the same on an out-of-domain file and each metric's change against --baseline."""
    from patentcpc.io import prepare_output_dir
    from patentcpc.retrieval.benchmark import (
        BenchmarkOptions,
        format_table,
        plot_benchmark,
        run_benchmark,
        write_csv,
    )
    from patentcpc.retrieval.evaluation import KNNOptions

    check_input(data, "--data")
    check_input(transfer, "--transfer")
    for spec in [*models.split(","), baseline]:
        _check_spec(spec.strip() if spec else None, "--models" if spec != baseline else "--baseline")
    if qrels is not None and not Path(qrels).is_file():
        from patentcpc.errors import DataError

        raise DataError(qrels, "file not found (--qrels)")
    prepare_output_dir(output_dir, "benchmark", [data, qrels, *models.split(",")], "--output-dir")
    cfg = data_config(**data_options(None, label_field, id_field, level, on_bad_row, split))
    knn = KNNOptions(k=knn_k, weighting=knn_weighting, temperature=knn_temperature)
    opts = BenchmarkOptions(views=views, folds=folds, knn=knn, probe=probe,
                            zero_shot=zero_shot, batch_size=batch_size, compression=compression)
    specs = [m.strip() for m in models.split(",") if m.strip()]
    if baseline and baseline not in specs:
        specs.insert(0, baseline)
    say = lambda msg: console.print(msg, highlight=False, markup=False)  # noqa: E731
    rows = run_benchmark(specs, data, opts, output_dir, qrels, cfg.load_kwargs(), progress=say)
    if transfer:
        from dataclasses import replace

        from patentcpc.retrieval.transfer import format_markdown, transfer_report, write_report

        if len(specs) < 2:
            raise ConfigError("--transfer compares models: give two or more --models (or --baseline BASE)")
        say(f"out-of-domain: {transfer}")
        out_kwargs = {k: v for k, v in cfg.load_kwargs().items() if k in ("level", "on_bad_row")}
        out_rows = run_benchmark(specs, transfer, replace(opts, views=None), output_dir, None, out_kwargs,
                                 progress=say)
        rep = transfer_report(rows, out_rows, baseline or specs[0])
        sources = {"in-domain": str(data), "out-of-domain": str(transfer)}
        paths = [report] if report else [output_dir / "transfer_report.md", output_dir / "transfer_report.json"]
        for path in paths:
            write_report(rep, path, sources)
        rows = rows + [{**r, "view": f"{r['view']} (transfer)"} for r in out_rows]
        out.print(format_markdown(rep, sources), markup=False, highlight=False, soft_wrap=True)
        console.print(f"wrote {', '.join(map(str, paths))}", highlight=False)
    csv_path = write_csv(rows, output_dir / "embedding_benchmark.csv")
    png_path = plot_benchmark(rows, output_dir / "embedding_benchmark.png")
    lines = format_table(rows)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        out.print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)), markup=False, highlight=False,
                  soft_wrap=True)
    console.print(f"wrote {csv_path} and {png_path}", highlight=False)
