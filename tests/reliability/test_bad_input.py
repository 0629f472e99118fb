"""Bad input, table-driven, through the real CLI (`plan` and `migrate --yes`): each case exits non-zero with one
line naming a typed error, and leaves every collection and alias of the store exactly as it was."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import models as qm
from typer.testing import CliRunner

from qdrant_distill.cli.app import app
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.connectors.base import UNNAMED, Point
from tests.conftest import random_unit
from tests.reliability.conftest import FIGURES, fast_dir, no_sleep_retries, store_state
from tests.reliability.fake_server import refusing_server
from tests.test_migration import build_source, write_beir

SERVER = "{server}"  # replaced by the URL of a fake server answering 401 or 403
STATUS = {"401": 401, "403": 403}

# (case, arguments, typed error). Cases with a --url run without --path; "{dir}" is a folder, "{bad}" a config file
# that is not UTF-8, "{syntax}" one that is not TOML, "{unknown}" one with an unknown key; "{teacher}" and
# "{student}" are the tiny 48-d teacher model and the tiny 32-d student model (neither made the stored vectors).
CASES: list[tuple[str, list[str], str]] = [
    ("missing alias", ["--alias", "ghost"], "CollectionNotFound"),
    ("missing collection", ["--collection", "ghost"], "CollectionNotFound"),
    ("alias name used by a collection", ["--collection", "plain", "--new-alias", "taken", "--sample-size", "5"],
     "AliasConflict"),
    ("unknown vector name", ["--alias", "docs", "--vector-name", "nope"], "VectorNotFound"),
    ("sparse-only", ["--collection", "sparse_only"], "UnsupportedVectors"),
    ("multivector-only", ["--collection", "multi", "--dim", "4"], "UnsupportedVectors"),
    ("no text payload", ["--collection", "notext"], "NoTextPayload"),
    ("text field nobody has", ["--alias", "docs", "--text-field", "body"], "NoTextPayload"),
    ("empty text everywhere", ["--collection", "blank"], "NoTextPayload"),
    ("empty collection", ["--collection", "empty", "--dim", "4"], "EmptyCollection"),
    ("dim equal to the teacher's", ["--alias", "docs", "--dim", "48"], "DimensionError"),
    ("dim above the teacher's", ["--alias", "docs", "--dim", "4096"], "DimensionError"),
    ("dim 0", ["--alias", "docs", "--dim", "0"], "DimensionError"),
    ("dim negative", ["--alias", "docs", "--dim", "-3"], "DimensionError"),
    ("infinite stored vectors (Dot)", ["--collection", "inf_dot"], "InvalidVectors"),
    ("NaN stored vectors (Cosine of inf)", ["--collection", "nan_cos"], "InvalidVectors"),
    ("target collection exists", ["--alias", "docs", "--target", "taken"], "CollectionExists"),
    ("target is the source", ["--alias", "docs", "--target", "docs_v1"], "CollectionExists"),
    ("URL without scheme", ["--alias", "docs", "--url", "qdrant.example:6333"], "ConfigError"),
    ("URL with another scheme", ["--alias", "docs", "--url", "ftp://qdrant.example"], "ConfigError"),
    ("URL with a password and no scheme", ["--alias", "docs", "--url", "alice:Pa55w0rd@127.0.0.1:6333"],
     "ConfigError"),
    ("URL with a password and a bad port", ["--alias", "docs", "--url", "http://alice:Pa55w0rd@127.0.0.1:99999"],
     "ConfigError"),
    ("refused connection", ["--alias", "docs", "--url", "http://127.0.0.1:9"], "ConnectionFailed"),
    ("wrong API key (401)", ["--alias", "docs", "--url", SERVER + "401", "--api-key", "wrong"],
     "AuthenticationFailed"),
    ("wrong API key (403)", ["--alias", "docs", "--url", SERVER + "403", "--api-key", "wrong"],
     "AuthenticationFailed"),
    ("config file missing", ["--alias", "docs", "--config", "/no/such/config.toml"], "ConfigError"),
    ("config file is a folder", ["--alias", "docs", "--config", "{dir}"], "ConfigError"),
    ("config file not UTF-8", ["--alias", "docs", "--config", "{bad}"], "ConfigError"),
    ("config file not TOML", ["--alias", "docs", "--config", "{syntax}"], "ConfigError"),
    ("config file with an unknown key", ["--alias", "docs", "--config", "{unknown}"], "ConfigError"),
    ("student path does not exist", ["--alias", "docs", "--student", "./no/such/model"], "ConfigError"),
    ("--alias and --collection", ["--alias", "docs", "--collection", "docs_v1"], "ConfigError"),
    ("teacher that did not make the stored vectors", ["--alias", "docs", "--teacher", "{teacher}"], "TeacherMismatch"),
    ("teacher of another dimension", ["--alias", "docs", "--teacher", "{student}"], "TeacherMismatch"),
    ("teacher labels without a teacher", ["--alias", "docs", "--label-queries", "10"], "ConfigError"),
    ("dim the sample cannot span", ["--alias", "docs", "--dim", "40", "--sample-size", "20"], "DimensionError"),
    ("dim not below the student body's", ["--alias", "docs", "--dim", "32", "--sample-size", "100"],
     "DimensionError"),
    ("sample too small to hold out", ["--alias", "docs", "--sample-size", "5"], "ConfigError"),
    ("collection of 5 points", ["--collection", "five", "--sample-size", "5"], "EmptyCollection"),
    ("--min-ndcg without --queries", ["--alias", "docs", "--min-ndcg", "0.5"], "ConfigError"),
    ("--queries folder missing", ["--alias", "docs", "--queries", "/no/such/beir"], "ConfigError"),
    ("--queries folder not BEIR", ["--alias", "docs", "--queries", "{dir}"], "ConfigError"),
    ("pruned student without a teacher", ["--alias", "docs", "--student-kind", "pruned"], "ConfigError"),
    ("--keep-layers above the teacher's depth",
     ["--alias", "docs", "--student-kind", "pruned", "--teacher", "{teacher}", "--keep-layers", "9"], "ConfigError"),
    ("template that formats a field", ["--alias", "docs", "--text-template", "{text!r}"], "ConfigError"),
    ("text field holding objects", ["--collection", "objects"], "NoTextPayload"),
    ("Dot distance over vectors of any norm", ["--collection", "dot_norms"], "UnsupportedVectors"),
    ("Euclid distance over vectors of any norm", ["--collection", "euclid_norms"], "UnsupportedVectors"),
    ("Manhattan distance over vectors of any norm", ["--collection", "manhattan_norms"], "UnsupportedVectors"),
    ("all-zero stored vectors", ["--collection", "zeros"], "InvalidVectors"),
    ("--run-dir that is a file", ["--alias", "docs", "--run-dir", "{bad}"], "ConfigError"),
    ("--run-dir under a file", ["--alias", "docs", "--run-dir", "{under_file}"], "ConfigError"),
    # session 11 (issue 20, 4): refused in plan, not after training, and never a hang
    ("Ray address nothing listens on", ["--alias", "docs", "--engine", "ray", "--ray-address", "127.0.0.1:1"],
     "ConfigError"),
    ("Ray Client address nothing listens on",
     ["--alias", "docs", "--engine", "ray", "--ray-address", "ray://127.0.0.1:1"], "ConfigError"),
    ("student a relative path that does not exist", ["--alias", "docs", "--student", "no/such/model"], "ConfigError"),
    ("student folder without a model", ["--alias", "docs", "--student", "{dir}"], "ConfigError"),
    ("student a hub name not cached, hub offline", ["--alias", "docs", "--student", "qd-nobody/no-such-model"],
     "ConfigError"),
    ("teacher a hub name not cached, hub offline", ["--alias", "docs", "--teacher", "qd-nobody/no-such-teacher"],
     "ConfigError"),
    ("qrels judging no document of the corpus", ["--alias", "docs", "--queries", "{beir_unjudged}"], "ConfigError"),
    ("labelled corpus ids that are no point ids", ["--alias", "docs", "--queries", "{beir_no_points}"],
     "ConfigError"),
    ("project mode, labelled documents partly no points",
     ["--alias", "docs", "--mode", "project", "--queries", "{beir_half_points}"], "ConfigError"),
    ("--queries with a broken JSONL line", ["--alias", "docs", "--queries", "{beir_broken_line}"], "ConfigError"),
    ("--queries with a binary queries file", ["--alias", "docs", "--queries", "{beir_binary}"], "ConfigError"),
    ("--queries with a query without _id", ["--alias", "docs", "--queries", "{beir_no_id}"], "ConfigError"),
    # issue 31, 6: teacher labels train a student; projection-only trains none
    ("--label-queries in projection-only mode",
     ["--alias", "docs", "--mode", "projection-only", "--teacher", "{teacher}", "--no-teacher-check",
      "--label-queries", "10"],
     "ConfigError"),
]

BEIR_FOLDERS = ("beir_unjudged", "beir_no_points", "beir_half_points", "beir_broken_line", "beir_binary",
                "beir_no_id")


def build_beir_folders(root: Path, texts: list[str]) -> None:
    """Labelled folders that cannot be used (tests.test_migration.write_beir, then broken): named as BEIR_FOLDERS."""
    write_beir(root / "beir_unjudged", texts)
    (root / "beir_unjudged" / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\tdoc-{i}\t1\n" for i in range(40)))
    write_beir(root / "beir_no_points", texts, first_id=10_000)  # docs_v1's ids are 0..239
    write_beir(root / "beir_half_points", texts, first_id=220)  # 220..259: 20 are points
    write_beir(root / "beir_broken_line", texts)
    with open(root / "beir_broken_line" / "corpus.jsonl", "a") as fh:
        fh.write('{"_id": "40", "text": \n')
    write_beir(root / "beir_binary", texts)
    (root / "beir_binary" / "queries.jsonl").write_bytes(bytes(range(256)) * 4)
    write_beir(root / "beir_no_id", texts)
    with open(root / "beir_no_id" / "queries.jsonl", "a") as fh:
        fh.write('{"id": "q40", "text": "a query without _id"}\n')


def build_store(path: Path, texts: list[str]) -> None:
    vp8 = qm.VectorParams(size=8, distance=qm.Distance.COSINE)
    with QdrantConnector.open(path=str(path)) as conn:
        c = conn.client
        build_source(conn, texts)  # docs_v1 behind the alias docs: 240 points, 48-d
        build_source(conn, texts, name="plain", alias=None, n=20)
        build_source(conn, texts, name="five", alias=None, n=5)
        c.create_collection("taken", vectors_config=vp8)
        c.create_collection("empty", vectors_config=vp8)
        c.create_collection("sparse_only", vectors_config={}, sparse_vectors_config={"bm25": qm.SparseVectorParams()})
        c.upsert("sparse_only", [qm.PointStruct(id=i, vector={"bm25": qm.SparseVector(indices=[i], values=[1.0])},
                                                payload={"text": texts[i]}) for i in range(10)])
        mv = qm.VectorParams(size=8, distance=qm.Distance.DOT,
                             multivector_config=qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM))
        c.create_collection("multi", vectors_config=mv)
        c.upsert("multi", [qm.PointStruct(id=i, vector=[[0.1] * 8, [0.2] * 8], payload={"text": texts[i]})
                           for i in range(10)])
        vectors = random_unit(20, 48, seed=3)
        for name, payload in (("notext", lambda i: {"body": texts[i]}), ("blank", lambda i: {"text": " " * (i % 3)}),
                              ("objects", lambda i: {"text": {"en": texts[i]}})):
            c.create_collection(name, vectors_config=qm.VectorParams(size=48, distance=qm.Distance.COSINE))
            conn.upsert(name, [Point(i, payload(i), {UNNAMED: vectors[i]}) for i in range(20)])
        # norms from 0.001 to 1000 under distances that use them; zero vectors on every other point (Dot keeps them)
        scales = np.logspace(-3, 3, 20)[:, None]
        for name, distance, rows in (("dot_norms", qm.Distance.DOT, vectors * scales),
                                     ("euclid_norms", qm.Distance.EUCLID, vectors * scales),
                                     ("manhattan_norms", qm.Distance.MANHATTAN, vectors * scales),
                                     ("zeros", qm.Distance.DOT, vectors * (np.arange(20) % 2)[:, None])):
            c.create_collection(name, vectors_config=qm.VectorParams(size=48, distance=distance))
            conn.upsert(name, [Point(i, {"text": texts[i]}, {UNNAMED: rows[i]}) for i in range(20)])
        # local mode refuses NaN on upsert, but stores inf (Dot) and turns inf into NaN when normalising (Cosine)
        for name, distance in (("inf_dot", qm.Distance.DOT), ("nan_cos", qm.Distance.COSINE)):
            c.create_collection(name, vectors_config=qm.VectorParams(size=48, distance=distance))
            rows = vectors.copy()
            rows[::2, 0] = float("inf")  # every other point
            conn.upsert(name, [Point(i, {"text": texts[i]}, {UNNAMED: rows[i]}) for i in range(20)])


@pytest.fixture(scope="module")
def store(demo_texts: list[str]) -> Iterator[dict[str, Any]]:
    root = fast_dir("bad")
    build_store(root / "qdrant", demo_texts)
    (root / "dir.toml").mkdir()
    (root / "bad.toml").write_bytes(b"dim = 8\n\xff\xfe\x00source = '\xe9'\n")
    (root / "syntax.toml").write_text("dim = = 3\n[qdrant\n")
    (root / "unknown.toml").write_text("colour = 'red'\n")
    build_beir_folders(root, demo_texts)
    with refusing_server(401) as s401, refusing_server(403) as s403:
        yield {"root": root, "path": root / "qdrant", "before": store_state(root / "qdrant"),
               "servers": {"401": s401.url, "403": s403.url}}
    shutil.rmtree(root, ignore_errors=True)


def argv(case_args: list[str], store: dict[str, Any], tiny_model_path: Path, run_dir: Path,
         teacher_path: Path | None = None) -> list[str]:
    root = store["root"]
    files = {"{dir}": root / "dir.toml", "{bad}": root / "bad.toml", "{syntax}": root / "syntax.toml",
             "{unknown}": root / "unknown.toml", "{teacher}": teacher_path, "{student}": tiny_model_path,
             "{under_file}": root / "bad.toml" / "run", **{f"{{{name}}}": root / name for name in BEIR_FOLDERS}}
    out = []
    for a in case_args:
        if a.startswith(SERVER):
            a = store["servers"][a[len(SERVER):]]
        out.append(str(files.get(a, a)))
    base = ["--student", str(tiny_model_path), "--dim", "4", "--sample-size", "10", "--max-steps", "1",
            "--min-recall", "0", "--min-spearman", "-1", "--run-dir", str(run_dir), "--no-progress"]
    if "--url" not in out:
        base = ["--path", str(store["path"]), *base]
    return base + out  # the case's options come last: they win over the defaults above


@pytest.mark.parametrize("command", ["plan", "migrate"])
@pytest.mark.parametrize(("case", "args", "error"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_one_typed_line_and_changes_nothing(
    case, args, error, command, store, tiny_model_path, teacher_path, tmp_path, monkeypatch
) -> None:
    no_sleep_retries(monkeypatch)
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    monkeypatch.delenv("QDRANT_URL", raising=False)
    run_dir = tmp_path / "run"
    extra = ["--yes"] if command == "migrate" else []
    result = CliRunner().invoke(app, [command, *extra, *argv(args, store, tiny_model_path, run_dir, teacher_path)])

    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr  # one line ...
    match = re.match(r"error: (\w+): \S", errors[0])
    assert match and match.group(1) == error, errors[0]  # ... naming the typed error
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert "Pa55w0rd" not in result.output + result.stderr  # a password written into a URL is never printed
    assert not (run_dir / "journal.json").exists()  # nothing started
    assert store_state(store["path"]) == store["before"]  # every collection and alias byte-for-byte as before
    FIGURES.setdefault("bad inputs rejected", set()).add(case)


# -- output paths (issue 31, item 9): checked before anything is read, one line ---------------------------------------
OUTPUTS = {  # what is given, what the line says
    "a folder": ("{dir}", "is a folder"),
    "empty": ("", "'.' is a folder"),
    "under a file": ("{under_file}", "lies under the file"),
    "/proc": ("/proc/qd-distill-test.json", "nothing can be written in '/proc'"),
    "/sys": ("/sys/qd-distill-test.json", "nothing can be written in '/sys'"),
}


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_a_dims_out_that_cannot_be_written_is_one_line(case, store, tiny_model_path, tmp_path, monkeypatch) -> None:
    given, says = OUTPUTS[case]
    monkeypatch.chdir(tmp_path)
    out = {"{dir}": str(tmp_path), "{under_file}": str(store["root"] / "bad.toml" / "dims.json")}.get(given, given)
    result = CliRunner().invoke(app, ["plan", *argv(["--alias", "docs", "--dims-out", out], store, tiny_model_path,
                                                    tmp_path / "run")])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ConfigError: ") and says in lines[0], lines[0]
    assert "--dims-out" in lines[0] or "dimension table" in lines[0], lines[0]
    assert store_state(store["path"]) == store["before"]
    FIGURES.setdefault("output paths refused (plan --dims-out)", set()).add(case)


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_an_edge_out_that_cannot_be_written_is_one_line(case, store, tmp_path, monkeypatch) -> None:
    given, says = OUTPUTS[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("a file")
    out = {"{dir}": str(tmp_path / "taken"), "{under_file}": str(tmp_path / "taken" / "edge")}.get(given, given)
    says = "is a file" if case == "a folder" else says  # --out names a folder: a file is what it cannot be
    result = CliRunner().invoke(app, ["export-edge", "docs", "--out", out, "--path", str(store["path"])])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    if case == "empty":  # "" reads as "." (this folder, which holds a file): refused by whichever check comes first
        assert lines[0].startswith("error: ConfigError: "), lines[0]
    else:
        assert lines[0].startswith("error: ConfigError: the Edge folder") and says in lines[0], lines[0]
    assert store_state(store["path"]) == store["before"]
    FIGURES.setdefault("output paths refused (export-edge --out)", set()).add(case)


# -- the Ray engine's resources (issue 31, item 5): checked in plan, one line; never a wait ---------------------------
RAY_CASES = {  # arguments, what the line says
    "workers this machine cannot hold": (["--engine", "ray", "--workers", "1000"], "1000 Ray workers on this machine's"),
    "GPUs this machine lacks": (["--engine", "ray", "--gpus-per-worker", "8"], "need 16 GPUs; this machine has"),
    "an address of another scheme": (["--engine", "ray", "--ray-address", "garbage://nowhere:99999"],
                                     "Ray does not read the scheme 'garbage://'"),
    "an address with a port out of range": (["--engine", "ray", "--ray-address", "nowhere:99999"],
                                            "--ray-address 'nowhere:99999': Port out of range"),
}


@pytest.mark.parametrize("command", ["plan", "migrate"])
@pytest.mark.parametrize("case", list(RAY_CASES))
def test_ray_resources_are_checked_in_plan(case, command, store, tiny_model_path, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    args, says = RAY_CASES[case]
    run_dir = tmp_path / "run"
    extra = ["--yes"] if command == "migrate" else []
    result = CliRunner().invoke(app, [command, *extra, *argv(["--alias", "docs", *args], store, tiny_model_path,
                                                             run_dir)])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert errors[0].startswith("error: ConfigError: ") and says in errors[0], errors[0]
    assert not (run_dir / "journal.json").exists() and store_state(store["path"]) == store["before"]
    FIGURES.setdefault("Ray resources refused in plan", set()).add(case)


def test_ray_options_without_the_ray_engine_are_said_to_have_no_effect(store, tiny_model_path, tmp_path) -> None:
    result = CliRunner().invoke(app, ["plan", "--json", *argv(["--alias", "docs", "--workers", "4", "--dim", "8",
                                                               "--sample-size", "100"], store, tiny_model_path,
                                                              tmp_path / "run")])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["notes"]
    assert "--workers has no effect with the local engine: pass --engine ray to run on Ray" in notes, notes
