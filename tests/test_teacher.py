"""A teacher at hand: the plan's teacher check (right teacher accepted; a pruned copy and another text template
refused, with the measured cosine) and teacher labels (cut, labelled, cached, resumed, used in training)."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models as qm

from qdrant_distill import (
    ConfigError,
    DistillConfig,
    GateConfig,
    MigrationConfig,
    Stage,
    TeacherMismatch,
    load_encoder,
    make_plan,
    migrate,
)
from qdrant_distill.cli.demo_data import load_demo_texts
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.connectors.base import UNNAMED, Point
from qdrant_distill.distillation.recipe import distill
from qdrant_distill.folders import DistillFolder

LABELS_DIR = DistillFolder.LABELS
from qdrant_distill.distillation.pseudo_queries import cut_queries, sentences
from qdrant_distill.distillation.teacher import LABEL_PART, check_teacher, label_queries
from qdrant_distill.inference.encoders import EncodeKind, as_encoder
from tests.conftest import MINILM, random_unit

pytestmark = pytest.mark.skipif(not MINILM.exists(), reason="needs models/all-MiniLM-L6-v2 (scripts/setup.sh)")

N = 120
TEMPLATE = "{title}: {text}"


class Counting:
    """A real encoder that counts the texts it was asked to encode."""

    def __init__(self, inner) -> None:
        self.inner, self.texts = inner, 0
        self.name, self.dim = inner.name, inner.dim

    def encode(self, texts: Sequence[str], *, kind: EncodeKind = "document") -> np.ndarray:
        self.texts += len(texts)
        return self.inner.encode(texts, kind=kind)

    def describe(self) -> str:
        return self.inner.describe()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    """An embedded store whose collection was indexed by MiniLM with the template "{title}: {text}"."""
    store = tmp_path_factory.mktemp("teacher") / "store"
    rows = load_demo_texts()[:N]
    vectors = load_encoder(MINILM).encode([TEMPLATE.format(**r) for r in rows])
    with QdrantConnector.open(path=str(store)) as conn:
        conn.client.create_collection("docs_v1", vectors_config=qm.VectorParams(size=384,
                                                                               distance=qm.Distance.COSINE))
        conn.upsert("docs_v1", [Point(id=i, payload={"title": r["title"], "text": r["text"]}, vectors={UNNAMED: v})
                                for i, (r, v) in enumerate(zip(rows, vectors))])
        conn.create_alias("docs", "docs_v1")
    return store


def plan_for(store: Path, tmp_path: Path, **overrides):
    base = dict(source="docs", dim=16, sample_size=60, run_dir=str(tmp_path / "run"), text_template=TEMPLATE,
                teacher_model=str(MINILM), student={"base_model": str(MINILM)})
    with QdrantConnector.open(path=str(store)) as conn:
        return make_plan(MigrationConfig(**(base | overrides)), conn)


def test_the_right_teacher_passes_and_the_plan_says_so(indexed, tmp_path) -> None:
    plan = plan_for(indexed, tmp_path)
    assert plan.teacher_check is not None and plan.teacher_check.mean_cosine > 0.9999
    assert "teacher     " in plan.render() and "mean cosine 1.0000" in plan.render()
    assert not (tmp_path / "run").exists()  # plan writes nothing


def test_another_text_template_is_refused_with_the_measured_cosine(indexed, tmp_path) -> None:
    with pytest.raises(TeacherMismatch, match="mean cosine 0\\.[0-9]+") as err:
        plan_for(indexed, tmp_path, text_template=None, text_field="text")
    assert err.value.cosine < 0.99 and "--text-template" in str(err.value)
    # the user can still go on without the check (say the collection was indexed by an API model no longer served)
    assert plan_for(indexed, tmp_path, text_template=None, text_field="text", teacher_check=False).teacher_check is None


def test_the_teachers_pruned_copy_is_refused(indexed, tmp_path) -> None:
    from qdrant_distill.distillation.students import prune_layers

    pruned = copy.deepcopy(load_encoder(MINILM).model)
    prune_layers(pruned, 3)
    pruned.save(str(tmp_path / "pruned"))
    with pytest.raises(TeacherMismatch) as err:
        plan_for(indexed, tmp_path, teacher_model=str(tmp_path / "pruned"))
    assert err.value.cosine < 0.9


def test_a_teacher_of_another_dimension_is_refused(tiny_model_path) -> None:
    with pytest.raises(TeacherMismatch, match="32-d vectors, the stored ones are 384-d"):
        check_teacher(load_encoder(tiny_model_path), ["a text", "another"], random_unit(2, 384))


def test_labels_need_a_teacher(indexed, tmp_path) -> None:
    with pytest.raises(ConfigError, match="--label-queries"):
        plan_for(indexed, tmp_path, teacher_model=None, student=DistillConfig(base_model=str(MINILM), label_queries=10))


def test_cut_queries_are_distinct_deterministic_and_of_several_kinds(demo_texts) -> None:
    docs = ["Rivers flow to the sea. They carry water and silt downhill. Deltas form at the mouth of many rivers."] * 1
    docs += demo_texts[:50]
    cuts = cut_queries(docs, 120, seed=3)
    assert len(cuts) == len(set(cuts)) == 120 and cuts == cut_queries(docs, 120, seed=3)
    assert cuts != cut_queries(docs, 120, seed=4)
    assert any(c == sentences(docs[0])[0] for c in cuts)  # a first sentence
    assert all(len(c) <= 300 and c.strip() for c in cuts)
    assert len(cut_queries(["one two three"], 50)) < 50  # a tiny corpus gives what it holds, no endless loop


def test_labels_are_cached_in_parts_and_a_resumed_run_pays_only_for_what_is_missing(tmp_path, demo_texts) -> None:
    teacher = Counting(load_encoder(MINILM))
    texts = cut_queries(demo_texts[:1500], LABEL_PART * 2 + 40, seed=0)
    first = label_queries(teacher, texts, tmp_path / "labels", progress=False)
    assert first.shape == (len(texts), 384) and teacher.texts == len(texts)
    np.testing.assert_allclose(first[:5], teacher.inner.encode(texts[:5], kind="query"), atol=1e-6)
    (tmp_path / "labels" / "part-00001.npy").unlink()  # a run killed while writing the second part
    teacher.texts = 0
    again = label_queries(teacher, texts, tmp_path / "labels", progress=False)
    assert teacher.texts == LABEL_PART and np.allclose(again, first, atol=1e-6)
    teacher.texts = 0
    label_queries(teacher, texts[:-1], tmp_path / "labels", progress=False)  # other texts: the cache is redone
    assert teacher.texts == len(texts) - 1


def test_labels_join_training_and_a_migration_records_them(indexed, tmp_path) -> None:
    student = DistillConfig(base_model=str(MINILM), label_queries=150, max_steps=2, head_init_samples=64,
                            early_stopping_patience=None)
    config = MigrationConfig(source="docs", dim=16, sample_size=100, run_dir=str(tmp_path / "run"), progress=False,
                             text_template=TEMPLATE, teacher_model=str(MINILM), student=student,
                             gate=GateConfig(min_recall_at_10=0.0, min_spearman=-1.0))
    with QdrantConnector.open(path=str(indexed)) as conn:
        assert "150 query-like texts" in make_plan(config, conn).render()
        report = migrate(config, connector=conn)
        assert report.stage is Stage.SWAPPED
        from qdrant_distill import open_journal, rollback

        rollback(conn, open_journal(tmp_path / "run"))  # leave the shared store as it was
    saved = json.loads((tmp_path / "run" / "student" / "distill.json").read_text())
    assert saved["label_pairs"] == 150 and saved["train_size"] == 90 + 150
    parts = sorted((tmp_path / "run" / "student" / LABELS_DIR).glob("part-*.npy"))
    assert len(parts) == 1 and np.load(parts[0]).shape == (150, 384)


def test_distill_reuses_cached_labels(tmp_path, demo_texts) -> None:
    texts = demo_texts[:80]
    stored = load_encoder(MINILM).encode(texts)
    cfg = DistillConfig(base_model=str(MINILM), teacher_model=str(MINILM), dim=8, label_queries=40, max_steps=1,
                        head_init_samples=32, early_stopping_patience=None)
    distill(texts, stored, cfg, output_dir=tmp_path / "out", progress=False)
    part = tmp_path / "out" / LABELS_DIR / "part-00000.npy"
    stamp = part.stat().st_mtime_ns
    result = distill(texts, stored, cfg, output_dir=tmp_path / "out", progress=False)
    assert part.stat().st_mtime_ns == stamp and result.label_pairs == 40
    with pytest.raises(ConfigError, match="teacher_model"):
        distill(texts, stored, cfg.model_copy(update={"teacher_model": None}), output_dir=tmp_path / "x",
                progress=False)


def test_as_encoder_passes_encoders_through() -> None:
    enc = load_encoder(MINILM)
    assert as_encoder(enc) is enc
