"""``fashion embed``, ``fashion index build|add|remove`` and ``fashion similar``
(the engine is :mod:`fashion.search`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fashion.errors import ConfigError
from fashion.predict.precision import PRECISIONS, RUNTIMES
from fashion.predict.predictor import Predictor
from fashion.search import HnswParams, Index, run_embed
from fashion.search.index import HNSW_THRESHOLD


@click.command("embed")
@click.argument("model")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The vectors file (Parquet): id, row, vector (L2-normalized), each "
                   "attribute's label and score; the model revision in its metadata.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Unreadable rows (default: OUT's name + .rejects.jsonl).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--resume", is_flag=True, help="Continue an interrupted run (skip rows done).")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT file.")
@click.option("--device", default=None, help="torch device: auto, cpu, cuda, cuda:N (default: auto).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="As for fashion predict.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="auto", show_default=True,
              help="As for fashion predict (an ONNX runtime computes the heads; the vector "
                   "is then a second, eager encode).")
@click.option("--emphasize", "emphasize", default="", metavar="ATTR[,ATTR...]",
              help="Attributes the vector emphasizes: their heads join the fused vector, so "
                   "neighbours share them (\"similar in category and pattern\"). Default: none.")
@click.option("--emphasis", default=0.5, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="With --emphasize: the share of the vector given to those attributes.")
def embed_command(model: str, input_path: Path, out: Path, rejects: Path | None, batch_size: int,
                  resume: bool, overwrite: bool, device: str | None, precision: str,
                  runtime: str, emphasize: str, emphasis: float) -> None:
    """Write the product vector and predicted attributes of every row of a manifest.

    The contract of fashion predict: every row is embedded or rejected, --resume continues an
    interrupted run. OUT feeds fashion index build. (For a catalog on a cluster, fashion
    predict --engine ray --embeddings writes the vectors as Parquet parts, and its --out
    folder feeds fashion index build too.)
    """
    if not input_path.is_file():
        raise click.BadParameter(f"{input_path} is not a file; give a .csv, .jsonl or .parquet "
                                 "manifest", param_hint="INPUT")
    predictor = Predictor.from_pretrained(model, device=device or "auto", precision=precision,  # type: ignore[arg-type]
                                          runtime=runtime)  # type: ignore[arg-type]
    names = [n.strip() for n in emphasize.split(",") if n.strip()]
    predictor.set_embedding_space({"emphasize": names, "emphasis": emphasis} if names else None)
    summary = run_embed(predictor, input_path, out, rejects=rejects, batch_size=batch_size,
                        resume=resume, overwrite=overwrite)
    click.echo(predictor.describe())
    click.echo(f"vectors: {predictor.embedding_space.describe()}, {predictor.embedding_dim} dimensions")
    click.echo(summary.line())


@click.group("index")
def index_group() -> None:
    """Build and update a similarity index (faiss; pip install 'fashion-sdk[search]')."""


@index_group.command("build")
@click.argument("vectors", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The index folder (a new folder, or an index to replace).")
@click.option("--hnsw-threshold", default=HNSW_THRESHOLD, show_default=True,
              type=click.IntRange(min=1), help="Products from which HNSW replaces exact search.")
@click.option("--m", "m", default=32, show_default=True, type=click.IntRange(4, 256),
              help="HNSW: neighbours per node.")
@click.option("--ef-construction", default=200, show_default=True, type=click.IntRange(min=8))
@click.option("--ef-search", default=None, type=click.IntRange(min=1),
              help="HNSW: candidates per query without a filter (filters raise it). Default: "
                   "the smallest that reaches --recall on the index's own products, measured "
                   "at build.")
@click.option("--recall", "recall", default=0.95, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="HNSW: the recall@10 against exact search that the measured efSearch reaches.")
def index_build(vectors: tuple[Path, ...], out: Path, hnsw_threshold: int, m: int,
                ef_construction: int, ef_search: int | None, recall: float) -> None:
    """Build an index from vectors files of one model revision.

    VECTORS: files of fashion embed, or the --out folder (or its part files) of fashion
    predict --engine ray --embeddings.
    """
    from fashion.data.outputs import check_output_paths

    check_output_paths(list(vectors), folders={"--out": out})
    index = Index.build(list(vectors), hnsw_threshold=hnsw_threshold,
                        hnsw=HnswParams(m=m, ef_construction=ef_construction, ef_search=ef_search,
                                        recall_target=recall))
    index.save(out)
    click.echo(json.dumps(index.describe()))


@index_group.command("add")
@click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
@click.argument("vectors", nargs=-1, required=True, type=click.Path(path_type=Path))
def index_add(index_path: Path, vectors: tuple[Path, ...]) -> None:
    """Add (or replace, by id) the products of vectors files of the index's model revision.

    VECTORS: as for fashion index build (a Ray --out folder too).
    """
    index = Index.load(index_path)
    added = index.add(list(vectors))
    index.save(index_path)
    click.echo(f"added {added}; " + json.dumps(index.describe()))


@index_group.command("remove")
@click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
@click.argument("ids", nargs=-1)
@click.option("--ids-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A file of product ids, one per line.")
def index_remove(index_path: Path, ids: tuple[str, ...], ids_file: Path | None) -> None:
    """Remove products by id (unknown ids are counted, not an error)."""
    wanted = list(ids)
    if ids_file is not None:
        wanted += [line.strip() for line in ids_file.read_text(encoding="utf-8").splitlines()
                   if line.strip()]
    if not wanted:
        raise click.UsageError("give product ids (or --ids-file)")
    index = Index.load(index_path)
    removed = index.remove(wanted)
    index.save(index_path)
    click.echo(f"removed {removed} of {len(wanted)} ids ({len(wanted) - removed} not in the "
               "index); " + json.dumps(index.describe()))


@click.command("similar")
@click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
@click.option("--id", "product_id", default=None, help="Query with a product of the index.")
@click.option("--image", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Query with a photo (embedded by the index's model, or --model).")
@click.option("--title", default=None, help="With --image: the product's title.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1, max=1000))
@click.option("--where", multiple=True, help="ATTRIBUTE=LABEL the results must have (repeat).")
@click.option("--change", multiple=True,
              help="With --id: ATTRIBUTE=LABEL, 'this, but ...' (re-ranked by similarity and "
                   "the head's score).")
@click.option("--min-score", type=click.FloatRange(0, 1), default=None,
              help="Score a filtered attribute needs (default: its abstention threshold).")
@click.option("--model", default=None, help="The model for --image (default: the index's).")
@click.option("--explain", is_flag=True, help="Also print the query plan.")
def similar_command(index_path: Path, product_id: str | None, image: Path | None,
                    title: str | None, k: int, where: tuple[str, ...], change: tuple[str, ...],
                    min_score: float | None, model: str | None, explain: bool) -> None:
    """The k products most similar to a product of INDEX or a photo, as JSON lines."""
    if (product_id is None) == (image is None):
        raise click.UsageError("give one of --id and --image")
    if title is not None and image is None:
        raise click.UsageError("--title goes with --image")
    if change and product_id is None:
        raise click.UsageError("--change goes with --id")
    index = Index.load(index_path)
    predictor = None
    query: object = product_id
    if image is not None:
        source = model or index.info.model
        if not source:
            raise ConfigError("the index does not record its model; pass --model.")
        predictor = Predictor.from_pretrained(source, device="cpu")
        query = {"images": [str(image)], **({"title": title} if title else {})}
    plan: dict[str, object] = {}
    hits = index.search(query, k, where=list(where), change=list(change), min_score=min_score,
                        predictor=predictor, explain=plan)
    if explain:
        click.echo(json.dumps({"plan": plan}))
    for hit in hits:
        click.echo(json.dumps(hit.to_dict(), ensure_ascii=False))


__all__ = ["embed_command", "index_group", "similar_command"]
