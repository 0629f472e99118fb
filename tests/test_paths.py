"""Paths of a run folder: a copied or moved run folder uses its own files; a moved export is re-pointed with
``qdrant-distill repoint``; a missing or damaged export is one typed error whose hint rebuilds it.

One real migration (CLI, embedded store, tiny model) is made per module; each test works on copies of its store and
run folder.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from qdrant_distill import errors
from qdrant_distill.cli.app import app
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.inference.encoders import load_encoder
from qdrant_distill.inference.formats import read_manifest
from qdrant_distill.migration import record
from qdrant_distill.migration.journal import Journal
from qdrant_distill.query.registry import encoder_for
from qdrant_distill.query.serve import AliasEncoders
from tests.test_cli import common
from tests.test_migration import build_source

TARGET = "docs_v1_distilled16"
PATH_FIELDS = ("sample_path", "student_path", "projection_path", "export_path")


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    """The single ``error:`` line of a failed command (and nothing like a traceback)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def hinted_command(hint: str, start: str) -> list[str]:
    """The ``qdrant-distill ...`` command a hint names (up to the next ``;`` or ``,`` or ``)``), split."""
    text = hint[hint.index(start):]
    for stop in (";", ", or", ")"):
        text = text.split(stop)[0]
    return shlex.split(text)[1:]  # without the program name


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, demo_texts: list[str], tiny_model_path: Path) -> tuple[Path, Path]:
    """A swapped migration made by the CLI: (embedded store, run folder)."""
    base = tmp_path_factory.mktemp("finished")
    store, run_dir = base / "qdrant", base / "run"
    with QdrantConnector.open(path=str(store)) as conn:
        build_source(conn, demo_texts)
    result = run("migrate", "--alias", "docs", "--yes", *common(store, tiny_model_path, run_dir))
    assert result.exit_code == 0, result.output
    return store, run_dir


@pytest.fixture
def copies(finished: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the store whose target records the query model in a copy of the run folder."""
    store, run_dir = shutil.copytree(finished[0], tmp_path / "qdrant"), shutil.copytree(finished[1], tmp_path / "run")
    with QdrantConnector.open(path=str(store)) as conn:
        record.write(conn, TARGET, {"query_model": str(run_dir / "student" / "onnx"),
                                    "journal": str(run_dir / "journal.json")})
    return store, run_dir


def _write_as_older_version(run_dir: Path, written_in: Path) -> None:
    """Rewrite the journal and distill.json as versions before 0.x wrote them: absolute paths under ``written_in``."""
    journal = json.loads((run_dir / "journal.json").read_text())
    for key in PATH_FIELDS:
        journal[key] = str(written_in / journal[key].removeprefix("./"))
    (run_dir / "journal.json").write_text(json.dumps(journal))
    for where in (run_dir / "student" / "distill.json", run_dir / "student" / "student" / "distill.json"):
        result = json.loads(where.read_text())
        for key in ("student_path", "projection_path", "export_path"):
            result[key] = str(written_in / "student" / result[key].removeprefix("./"))
        where.write_text(json.dumps(result))


@pytest.mark.parametrize("written_by", ["this version", "an older version"])
def test_a_copied_run_folder_exports_its_own_student(finished, tmp_path: Path, demo_texts, written_by) -> None:
    """Copy a finished run folder, delete the original, change the copy's student: ``export`` of the copy exports
    the copy's student (before: the original's, silently, from the absolute paths in the journal)."""
    original = shutil.copytree(finished[1], tmp_path / "original")
    if written_by == "an older version":
        _write_as_older_version(original, original)
    copy = shutil.copytree(original, tmp_path / "elsewhere" / "copy")
    shutil.rmtree(original)
    weights = copy / "student" / "student" / "model.safetensors"
    tensors = load_file(str(weights))
    rng = np.random.default_rng(0)
    save_file({k: (v + rng.normal(0, 0.5, v.shape).astype(v.dtype)) if v.dtype == np.float32 else v
               for k, v in tensors.items()}, str(weights))

    result = run("export", copy, "--format", "onnx")
    assert result.exit_code == 0, result.output
    student = copy / "student" / "student"
    assert read_manifest(copy / "student" / "onnx").source == str(student)
    texts = demo_texts[:8]
    exported = load_encoder(copy / "student" / "onnx", backend="onnx").encode(texts)
    changed = load_encoder(student, backend="torch").encode(texts)
    unchanged = load_encoder(finished[1] / "student" / "student", backend="torch").encode(texts)
    assert np.min(np.sum(exported * changed, axis=1)) > 0.999  # the copy's (changed) student was exported
    assert np.min(np.sum(exported * unchanged, axis=1)) < 0.99  # not the original's
    journal = Journal.load(copy)
    assert all(str(getattr(journal, key)).startswith(str(copy)) for key in PATH_FIELDS)
    journal.save()
    saved = json.loads((copy / "journal.json").read_text())
    assert [saved[key] for key in PATH_FIELDS] == ["./sample.npz", "./student/student", "./student/projection.npz",
                                                   "./student/onnx"]


def test_an_older_journal_prefers_the_run_folders_own_files(finished, tmp_path: Path, tiny_model_path) -> None:
    """Absolute paths of an older journal still load: under the folder it was written in they give way to this
    folder's copy of the file when it has one; a file it lacks, and paths outside (a teacher), stay as recorded."""
    copy = shutil.copytree(finished[1], tmp_path / "copy")
    old_root = tmp_path / "gone" / "run"
    _write_as_older_version(copy, old_root)
    (copy / "student" / "projection.npz").unlink()
    journal = Journal.load(copy)
    assert journal.sample_path == str(copy / "sample.npz")
    assert journal.student_path == str(copy / "student" / "student")
    assert journal.export_path == str(copy / "student" / "onnx")
    assert journal.projection_path == str(old_root / "student" / "projection.npz")  # no copy here: as recorded
    data = json.loads((copy / "journal.json").read_text())
    data["student_path"] = str(tiny_model_path)  # projection-only mode records the teacher, outside the run folder
    (copy / "journal.json").write_text(json.dumps(data))
    assert Journal.load(copy).student_path == str(tiny_model_path)
    data["student_path"] = "sentence-transformers/all-MiniLM-L6-v2"  # or a hub name
    (copy / "journal.json").write_text(json.dumps(data))
    assert Journal.load(copy).student_path == "sentence-transformers/all-MiniLM-L6-v2"


def _own_text_ranks_first(store: Path, text: str) -> tuple[str, float]:
    with QdrantConnector.open(path=str(store)) as conn:
        encoder = encoder_for(conn, "docs")
        (hit, score), *_ = conn.search(encoder.collection, encoder.encode(text)[0], limit=3)
        return conn.retrieve(encoder.collection, [hit])[0].payload["text"], score


def test_a_moved_run_folder_is_repointed_by_the_command_its_hint_names(copies, tmp_path: Path, demo_texts,
                                                                       tiny_model_path: Path) -> None:
    """Move the run folder: the query path says which command re-points the collection; that command works, queries
    work again, and re-pointing back restores the record exactly."""
    store, run_dir = copies
    with QdrantConnector.open(path=str(store)) as conn:
        before = record.read_from(conn, TARGET)
    moved = shutil.move(run_dir, tmp_path / "moved" / "run")
    with QdrantConnector.open(path=str(store)) as conn, pytest.raises(errors.StudentError) as raised:
        encoder_for(conn, "docs")
    assert str(run_dir / "student" / "onnx") in raised.value.message
    command = hinted_command(raised.value.hint, "qdrant-distill repoint")
    assert command[:2] == ["repoint", TARGET] and "NEW_FOLDER" in command
    refused = run(*[str(tiny_model_path) if c == "NEW_FOLDER" else c for c in command], "--path", store)
    assert "ConfigError" in one_error_line(refused)  # a folder that is not an export: refused, record unchanged
    with QdrantConnector.open(path=str(store)) as conn:
        assert record.read_from(conn, TARGET) == before

    done = run(*[str(Path(moved) / "student" / "onnx") if c == "NEW_FOLDER" else c for c in command], "--path", store)
    assert done.exit_code == 0, done.output
    assert f"query_model {run_dir / 'student' / 'onnx'} -> {Path(moved) / 'student' / 'onnx'}" in done.stdout
    assert _own_text_ranks_first(store, demo_texts[5]) == (demo_texts[5], pytest.approx(1.0, abs=1e-3))

    shutil.move(moved, run_dir)  # back where it was, and re-pointed back (the run folder stands for its export)
    back = run("repoint", "docs", "--model", run_dir, "--path", store)
    assert back.exit_code == 0, back.output
    with QdrantConnector.open(path=str(store)) as conn:
        assert record.read_from(conn, TARGET) == before


BROKEN = [("model.onnx", "onnx", "truncate"), ("model.onnx", "onnx", "delete"),
          ("model_int8.onnx", "onnx-int8", "delete"), ("model_int8.onnx", "onnx-int8", "truncate")]


@pytest.mark.parametrize(("graph", "backend", "damage"), BROKEN)
def test_a_missing_or_truncated_graph_is_one_typed_error(copies, graph: str, backend: str, damage: str) -> None:
    """Python API, the query service and the CLI all get one BrokenExport naming the folder, the file and the
    command that rebuilds the export (before: a raw FileNotFoundError or onnxruntime's InvalidProtobuf)."""
    store, run_dir = copies
    folder = run_dir / "student" / "onnx"
    path = folder / graph
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    else:
        path.unlink()
    rebuild = f"qdrant-distill export {run_dir}"
    with pytest.raises(errors.BrokenExport) as raised:
        load_encoder(folder, backend=backend)
    assert (raised.value.folder, raised.value.file) == (str(folder), graph) and rebuild in raised.value.hint
    with QdrantConnector.open(path=str(store)) as conn:
        record.write(conn, TARGET, {"query_backend": backend})
        with pytest.raises(errors.BrokenExport):
            encoder_for(conn, "docs")
        with pytest.raises(errors.BrokenExport):  # what serve answers with (one line, no traceback)
            AliasEncoders(conn, "docs").current()
    line = one_error_line(run("repoint", "docs", "--model", folder, "--path", store))
    assert line.startswith("error: BrokenExport: ") and str(folder) in line and graph in line and rebuild in line


def test_a_deleted_export_is_rebuilt_by_the_command_its_hint_names(copies, demo_texts) -> None:
    store, run_dir = copies
    shutil.rmtree(run_dir / "student" / "onnx")
    with QdrantConnector.open(path=str(store)) as conn, pytest.raises(errors.StudentError) as raised:
        encoder_for(conn, "docs")
    command = hinted_command(raised.value.hint, "qdrant-distill export")
    assert command == ["export", str(run_dir)]
    rebuilt = run(*command)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert _own_text_ranks_first(store, demo_texts[7]) == (demo_texts[7], pytest.approx(1.0, abs=1e-3))
