"""distill(): config, split, projection, training, saved student and distill.json."""

from __future__ import annotations

import json
import math
import random
import time

import numpy as np
import pytest

from qdrant_distill.distillation.config import DistillConfig, LossWeights, StudentKind
from qdrant_distill.distillation.pseudo_queries import pseudo_query
from qdrant_distill.distillation.recipe import distill
from qdrant_distill.distillation.result import DistillResult
from qdrant_distill.distillation.students import load_body
from qdrant_distill.distillation.training import TrainSettings, _Plan, train
from qdrant_distill.errors import (
    ConfigError,
    DimensionError,
    InvalidVectors,
    StudentError,
)
from qdrant_distill.evaluation.metrics import fidelity, pseudo_query_mrr
from qdrant_distill.folders import DistillFolder
from qdrant_distill.inference.encoders import load_encoder
from qdrant_distill.inference.projection import PCAProjection
from tests.conftest import MINILM, SHARED_DATA, encode

DIM = 12


@pytest.fixture(scope="module")
def pairs(teacher_path, demo_texts):
    texts = demo_texts[:120]
    return texts, encode(load_body(str(teacher_path)), texts)


def fast_config(tiny_model_path, **over) -> DistillConfig:
    base = {
        "base_model": str(tiny_model_path), "dim": DIM, "holdout_fraction": 0.25, "epochs": 2, "batch_size": 16,
        "lr_body": 1e-3, "lr_head": 1e-2, "max_seq_length": 64, "eval_steps": 3, "early_stopping_patience": None,
    }
    base.update(over)
    return DistillConfig(**base)


@pytest.fixture(scope="module")
def transformer_run(tiny_model_path, pairs, tmp_path_factory):
    texts, vecs = pairs
    out = tmp_path_factory.mktemp("run")
    return out, distill(texts, vecs, fast_config(tiny_model_path), output_dir=out, teacher_id="tiny-teacher",
                        progress=False)


def test_result_describes_the_run(transformer_run, pairs) -> None:
    _, result = transformer_run
    assert isinstance(result, DistillResult)
    assert (result.kind, result.dim, result.teacher_dim, result.teacher_id) == (StudentKind.TRANSFORMER, DIM, 48,
                                                                                  "tiny-teacher")
    assert (result.train_size, result.holdout_size) == (90, 30)
    assert result.steps == 12 and len(result.losses) == 12
    assert [e["step"] for e in result.evaluations] == [0, 3, 6, 9, 12]
    for metrics in (result.metrics, result.baseline_metrics, result.projection_metrics):
        assert {"fidelity/recall@10", "fidelity/spearman", "fidelity/cosine"} <= set(metrics)
    assert result.metrics["fidelity/recall@10"] >= result.baseline_metrics["fidelity/recall@10"]
    assert 0 < result.explained_variance <= 1 and result.wall_time_s > 0
    assert np.mean([h["loss"] for h in result.losses[-3:]]) < np.mean([h["loss"] for h in result.losses[:3]])


def test_saved_student_loads_anywhere_with_its_json(transformer_run, pairs) -> None:
    from sentence_transformers import SentenceTransformer

    out, result = transformer_run
    texts, _ = pairs
    plain = SentenceTransformer(result.student_path, device="cpu")
    ours = load_encoder(out, backend="torch")  # the distill() output folder stands for its student
    np.testing.assert_allclose(encode(plain, texts[:6]), ours.encode(texts[:6]), atol=1e-6)
    # by default it runs as its export chose: the int8 graph, checked against the torch student on the holdout
    fast = load_encoder(out)
    assert result.backend == "onnx-int8" and fast.describe().startswith("onnx-int8")
    assert float((fast.encode(texts[:6]) * encode(plain, texts[:6])).sum(axis=1).min()) > 0.98
    vecs = encode(plain, texts[:6])
    assert vecs.dtype == np.float32 and vecs.shape == (6, DIM)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert plain.max_seq_length == 64
    written = json.loads((out / DistillFolder.RESULT).read_text())
    assert written["teacher_id"] == "tiny-teacher" and written["dim"] == DIM
    assert written == json.loads((out / "student" / DistillFolder.RESULT).read_text())
    assert DistillResult.model_validate(written).metrics == result.metrics
    assert PCAProjection.load(result.projection_path).dim == DIM


def test_reported_metrics_match_the_saved_student(transformer_run, pairs, tiny_model_path) -> None:
    """Holdout is the same seeded split: re-measuring the saved student gives the reported fidelity."""
    out, result = transformer_run
    texts, vecs = pairs
    vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    _, hold = fast_config(tiny_model_path).holdout_split(len(texts))
    student = load_encoder(out, backend="torch")
    proj = PCAProjection.load(result.projection_path)
    hold_texts = [texts[i] for i in hold]
    doc_vecs, targets = encode(student, hold_texts), proj.transform(vecs[hold])
    again = fidelity(doc_vecs, vecs[hold], projected_targets=targets)
    # the query-side metrics: the same deterministic pseudo-query per held-out text
    queries = encode(student, [pseudo_query(t, random.Random(i)) for i, t in enumerate(hold_texts)])
    again["pseudo_query/mrr@10"] = pseudo_query_mrr(queries, targets)
    again["pseudo_query/self_mrr@10"] = pseudo_query_mrr(queries, doc_vecs)
    assert set(result.metrics) == set(again)
    for key, value in result.metrics.items():
        assert again[key] == pytest.approx(value, abs=1e-4)


def test_static_and_pruned_kinds(tiny_model_path, teacher_path, pairs, tmp_path) -> None:
    texts, vecs = pairs
    static = distill(texts, vecs, fast_config(tiny_model_path, kind="static", lr_static=5e-2), output_dir=tmp_path / "s",
                     progress=False)
    assert static.kind is StudentKind.STATIC and load_encoder(static.student_path).dim == DIM
    assert np.mean([h["loss"] for h in static.losses[-3:]]) < np.mean([h["loss"] for h in static.losses[:3]])
    pruned = distill(texts, vecs, fast_config(tiny_model_path, kind="pruned", teacher_model=str(teacher_path),
                                              keep_layers=2, lr_body=1e-4, lr_head=1e-4, epochs=1),
                     output_dir=tmp_path / "p", progress=False)
    model = load_encoder(pruned.student_path, backend="torch").model
    assert model[0].auto_model.config.num_hidden_layers == 2
    # before training, teacher-with-fewer-layers + projection already lands near the projected targets
    assert pruned.baseline_metrics["fidelity/cosine"] > 0.5


def test_seeded_runs_repeat(tiny_model_path, pairs, tmp_path) -> None:
    texts, vecs = pairs
    cfg = fast_config(tiny_model_path, kind="static", lr_static=5e-2, epochs=1, token_source="input")
    a = distill(texts, vecs, cfg, output_dir=tmp_path / "a", progress=False)
    b = distill(texts, vecs, cfg, output_dir=tmp_path / "b", progress=False)
    assert [h["loss"] for h in a.losses] == pytest.approx([h["loss"] for h in b.losses], rel=1e-5)


def test_explicit_holdout_and_matryoshka(tiny_model_path, pairs, tmp_path) -> None:
    texts, vecs = pairs
    cfg = fast_config(tiny_model_path, kind="static", lr_static=5e-2, epochs=1, matryoshka_dims=(4, 8),
                      token_source="input")
    r = distill(texts[:80], vecs[:80], cfg, output_dir=tmp_path, holdout=(texts[80:], vecs[80:]), progress=False)
    assert (r.train_size, r.holdout_size) == (80, 40)
    assert r.config["matryoshka_dims"] == [4, 8]


def test_query_recipe_keeps_the_best_pseudo_query_state(tiny_model_path, pairs, tmp_path) -> None:
    """Pseudo-queries against every training target, the kept state chosen by the query-side holdout metric."""
    texts, vecs = pairs
    cfg = fast_config(tiny_model_path, lr_body=0.0, head_init="ridge", pseudo_query_negatives="sample",
                      primary_metric="pseudo_query/mrr@10", epochs=3,
                      weights={"mse": 0.0, "contrastive": 0.0, "kl": 0.0, "pseudo_query": 1.0})
    r = distill(texts, vecs, cfg, output_dir=tmp_path, progress=False)
    assert r.primary_metric == "pseudo_query/mrr@10" and r.steps == 18
    assert set(r.losses[0]) == {"step", "loss", "pseudo_query"}
    assert np.mean([h["loss"] for h in r.losses[-3:]]) < np.mean([h["loss"] for h in r.losses[:3]])
    scores = {e["step"]: e["pseudo_query/mrr@10"] for e in r.evaluations}
    assert r.metrics["pseudo_query/mrr@10"] == max(scores.values()) == scores[r.best_step]
    # the saved student is the kept state: re-measured on the same holdout it gives the reported metric
    _, hold = cfg.holdout_split(len(texts))
    hold_texts = [texts[i] for i in hold]
    targets = PCAProjection.load(r.projection_path).transform(vecs[hold])
    student = load_encoder(r.student_path, backend="torch")
    queries = encode(student, [pseudo_query(t, random.Random(i)) for i, t in enumerate(hold_texts)])
    assert pseudo_query_mrr(queries, targets) == pytest.approx(r.metrics["pseudo_query/mrr@10"], abs=1e-4)


def test_recipes_fill_only_what_the_user_left_unset() -> None:
    from qdrant_distill.distillation.recipes import recipe_for, with_recipe

    query = recipe_for("transformer", "queries")
    plain = with_recipe(DistillConfig(), "queries")
    assert (plain.head_init.value, plain.pseudo_query_negatives, plain.primary_metric, plain.recipe) == (
        "ridge", "sample", "pseudo_query/mrr@10", query.name)
    assert plain.weights == query.values["weights"] and plain.weights is not query.values["weights"]
    mine = with_recipe(DistillConfig(epochs=2, head_init="own_pca"), "queries")
    assert (mine.epochs, mine.head_init.value, mine.lr_head) == (2, "own_pca", query.values["lr_head"])
    assert with_recipe(mine, "queries") == mine  # applying it again changes nothing
    # a static student gets the measured static recipe in both uses; what the user sets stays
    static = with_recipe(DistillConfig(kind="static"))
    assert (static.epochs, static.batch_size, static.weights.query_document, static.time_budget_s) == (80, 256, 1.0, None)
    assert with_recipe(DistillConfig(kind="static", epochs=1), "queries").epochs == 1
    pruned = with_recipe(DistillConfig(kind="pruned", teacher_model="t"), "queries")
    assert (pruned.lr_body, pruned.head_init.value, pruned.primary_metric) == (5e-5, "own_pca", "pseudo_query/mrr@10")
    assert "lr_body" in pruned.model_fields_set  # so the pruned default body rate does not replace it


def test_bad_inputs_raise_typed_errors(tiny_model_path, pairs, tmp_path) -> None:
    texts, vecs = pairs
    with pytest.raises(InvalidVectors):
        distill(texts[:10], vecs[:9], fast_config(tiny_model_path), output_dir=tmp_path, progress=False)
    bad = vecs.copy()
    bad[0, 0] = np.inf
    with pytest.raises(InvalidVectors):
        distill(texts, bad, fast_config(tiny_model_path), output_dir=tmp_path, progress=False)
    with pytest.raises(DimensionError):
        distill(texts, vecs, fast_config(tiny_model_path, dim=48), output_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError):
        distill(texts, vecs, fast_config(tiny_model_path, kind="pruned"), output_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError):
        distill(texts[:3], vecs[:3], fast_config(tiny_model_path), output_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError):
        DistillConfig.parse({"dim": 0})
    with pytest.raises(ConfigError):
        DistillConfig.parse({"kind": "nonsense"})
    with pytest.raises(StudentError):
        load_encoder(tmp_path / "nothing-here")


def test_schedule_warms_up_then_decays() -> None:
    f = _Plan(total=10, warmup=2).factor
    assert [round(f(s), 3) for s in (0, 1, 2, 6, 9)] == [0.5, 1.0, 1.0, 0.5, 0.125]


def test_early_stopping_restores_best(tiny_model, demo_texts) -> None:
    from qdrant_distill.distillation.students import add_head, body_and_head

    model = add_head(tiny_model, None, dim=4)
    texts = demo_texts[:40]
    targets = np.eye(4, dtype=np.float32)[np.arange(40) % 4]
    scores = iter([0.5, 0.6, 0.4, 0.3, 0.2, 0.1])
    body, head = body_and_head(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = TrainSettings(epochs=10, batch_size=8, lr_body=0.0, lr_head=1e-2, eval_steps=1, early_stopping_patience=2,
                             weights={"mse": 1.0}, pseudo_queries=False)
    out = train(model, texts, targets, settings, body_params=body, head_params=head,
                evaluate=lambda m: {"fidelity/recall@10": next(scores)}, progress=False)
    assert out.stopped_early and out.steps == 3 and out.best_step == 1
    assert out.metrics["fidelity/recall@10"] == 0.6
    assert not all(np.allclose(before[k], v) for k, v in model.state_dict().items())  # step 1's state, not step 0's
    for p in body:
        p.requires_grad_(True)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "scifact").exists() or not MINILM.exists(), reason="shared data or MiniLM absent")
def test_distil_real_minilm_on_scifact_beats_untrained_head(tmp_path) -> None:
    from qdrant_distill.evaluation.beir import load_beir

    ds = load_beir(SHARED_DATA / "scifact")
    data = np.load(SHARED_DATA / "scifact" / "teacher_all-mpnet-base-v2.npz")
    assert list(data["doc_ids"].astype(str)[:5]) == ds.doc_ids[:5]
    take = np.random.default_rng(0).permutation(len(ds.doc_ids))[:240]
    texts = [ds.doc_texts[i] for i in take]
    cfg = DistillConfig(
        base_model=str(MINILM), dim=64, head_init="ridge", holdout_fraction=0.25, epochs=3, batch_size=16,
        max_seq_length=96, lr_body=5e-5, lr_head=2e-3, early_stopping_patience=None, seed=0, export="none",
        weights=LossWeights(mse=1.0, contrastive=1.0, kl=1.0, pseudo_query=0.3),
    )
    result = distill(texts, data["doc_vecs"][take], cfg, output_dir=tmp_path, teacher_id="all-mpnet-base-v2",
                     progress=False)
    key = "fidelity/recall@10"
    assert result.holdout_size == 60
    # the ridge head (least squares onto the targets, before any gradient step) is the untrained baseline; a few
    # hundred documents leave little room above it, so the bar is "above", not "far above"
    assert result.metrics[key] > result.baseline_metrics[key]
    assert result.best_step > 0
    assert result.metrics["fidelity/cosine"] > result.baseline_metrics["fidelity/cosine"]
    assert not math.isnan(result.metrics["fidelity/spearman"])


def test_a_pruned_body_trains_unless_told_otherwise(teacher_path, pairs) -> None:
    from qdrant_distill.distillation.recipe import PRUNED_LR_BODY, _build_student
    from qdrant_distill.inference.projection import PCAProjection

    texts, vecs = pairs
    projection = PCAProjection.fit(vecs, DIM)
    default = DistillConfig(kind="pruned", teacher_model=str(teacher_path), keep_layers=2, dim=DIM)
    assert default.lr_body == 0.0  # the frozen-body default of transformer students
    assert _build_student(default, texts, projection.transform(vecs), projection).lr_body == PRUNED_LR_BODY
    chosen = default.model_copy(update={"lr_body": 0.0})  # an explicit choice is kept
    chosen.model_fields_set.add("lr_body")
    assert _build_student(chosen, texts, projection.transform(vecs), projection).lr_body == 0.0


def test_the_holdout_keeps_the_best_of_trained_untrained_and_plain_heads(tiny_model_path, pairs, tmp_path) -> None:
    """Frozen body: the trained head, the untrained start and the plain heads (own PCA, ridge) are compared on the
    holdout; the best is saved, and the report says which won and by how much."""
    from qdrant_distill.distillation.recipe import (
        QUERY_SIDE_GUARD,
        QUERY_SIDE_TOLERANCE,
    )

    texts, vecs = pairs
    cfg = fast_config(tiny_model_path, lr_body=0.0, max_steps=6, eval_steps=2)  # the head trains, the body not
    result = distill(texts, vecs, cfg, output_dir=tmp_path / "sel", progress=False)
    sel, key = result.selection, result.primary_metric
    assert {"own_pca head", "ridge head"} <= set(sel["candidates"]) and sel["primary_metric"] == key
    # the plain own-PCA head is the untrained start (training must not have written into it)
    assert sel["candidates"]["own_pca head"] == pytest.approx(sel["candidates"]["untrained"], abs=1e-6)
    assert result.metrics == sel["candidates"][sel["chosen"]]
    incumbent = sel["candidates"]["trained" if result.best_step else "untrained"]
    for name, metrics in sel["candidates"].items():  # whatever beat the kept state lost on the query side
        if metrics[key] > result.metrics[key] + 1e-4 and name != "untrained":
            assert metrics[QUERY_SIDE_GUARD] < incumbent[QUERY_SIDE_GUARD] - QUERY_SIDE_TOLERANCE
    others = [c[key] for n, c in sel["candidates"].items() if n != sel["chosen"]]
    assert sel["margin"] == pytest.approx(result.metrics[key] - max(others))
    # the saved student is the chosen state: re-measured on the same holdout it gives the reported figures
    norm = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    _, hold = cfg.holdout_split(len(texts))
    student = load_encoder(result.student_path, backend="torch")
    targets = PCAProjection.load(result.projection_path).transform(norm[hold])
    again = fidelity(student.encode([texts[i] for i in hold]), norm[hold], projected_targets=targets)
    assert again[key] == pytest.approx(result.metrics[key], abs=1e-4)


def test_a_plain_head_replaces_the_trained_state_only_without_losing_queries() -> None:
    """The SciFact case: the ridge head wins document fidelity but loses the query side, so training's state stays."""
    from qdrant_distill.distillation.recipe import _best

    key, guard = "fidelity/recall@10", "pseudo_query/self_mrr@10"
    scifact = {"trained": {key: 0.615, guard: 0.80}, "own_pca head": {key: 0.608, guard: 0.80},
               "ridge head": {key: 0.643, guard: 0.70}}
    assert _best(scifact, "trained", key) == "trained"
    better = scifact | {"ridge head": {key: 0.643, guard: 0.798}}
    assert _best(better, "trained", key) == "ridge head"
    # a query-side primary metric (project mode) needs no guard
    assert _best({"trained": {"pseudo_query/mrr@10": 0.5}, "ridge head": {"pseudo_query/mrr@10": 0.6}}, "trained",
                 "pseudo_query/mrr@10") == "ridge head"


def test_query_document_alone_trains_a_static_student_toward_its_own_documents(tiny_model_path, pairs,
                                                                                tmp_path) -> None:
    """The student-to-student term (a pseudo-query against the batch's documents as the student encodes them) is a
    loss of its own: with every other weight zero it still trains, and each document's cuts come to find it."""
    from qdrant_distill.distillation.config import LossWeights
    from qdrant_distill.distillation.pseudo_queries import pseudo_query

    texts, vecs = pairs
    weights = LossWeights(mse=0.0, cosine=0.0, contrastive=0.0, kl=0.0, pseudo_query=0.0, query_document=1.0)
    res = distill(texts, vecs, fast_config(tiny_model_path, kind="static", lr_static=5e-2, epochs=6, weights=weights,
                                           weight_decay=0.0, eval_steps=None),
                  output_dir=tmp_path / "qd", progress=False)
    assert all(set(h) == {"step", "loss", "query_document"} for h in res.losses)
    assert np.mean([h["loss"] for h in res.losses[-3:]]) < np.mean([h["loss"] for h in res.losses[:3]])

    def own_document_rank_one(path: str) -> float:
        enc = load_encoder(path, backend="torch")
        rng = random.Random(1)
        d = enc.encode(texts)
        q = enc.encode([pseudo_query(t, rng) for t in texts], kind="query")
        return float(np.mean(np.argmax(q @ d.T, axis=1) == np.arange(len(texts))))

    assert own_document_rank_one(res.student_path) > 0.5


def test_a_time_budget_plans_fewer_steps_and_ends_on_a_cooled_rate(tiny_model_path, pairs, tmp_path) -> None:
    """A budget that cannot fit the planned epochs: the plan shrinks to what fits at the measured pace, the learning
    rate decays to zero at the new end, training stops within the budget and the result says so."""
    texts, vecs = pairs
    cfg = fast_config(tiny_model_path, kind="static", lr_static=5e-2, epochs=400, batch_size=8, eval_steps=50,
                      time_budget_s=2.0)
    started = time.perf_counter()
    result = distill(texts, vecs, cfg, output_dir=tmp_path, progress=False)
    planned = 400 * math.ceil(len(texts) * 0.75 / 8)
    assert result.out_of_time and 0 < result.steps < planned
    assert time.perf_counter() - started < 60  # the budget bounds training (the rest: building and saving)
    assert result.recipe == "static-query-document" and result.config["epochs"] == 400  # what was set stays
    plan = _Plan(total=100, warmup=10)
    assert plan.factor(0) == pytest.approx(0.1) and plan.factor(100) == 0.0
    plan.total = 40  # what fit_budget does when the budget cannot fit the steps: the decay ends there
    assert plan.factor(40) == 0.0 and plan.factor(25) == pytest.approx(0.5)


def test_distill_json_records_an_endpoint_teacher_without_what_may_hold_a_secret() -> None:
    from qdrant_distill.distillation.recipe import _recorded

    secret = "sk-path-4f1e-do-not-store"
    cfg = DistillConfig(teacher_model=f"openai+http://10.0.0.5:8000/{secret}/v1?model=m#{secret}", label_queries=8)
    recorded = _recorded(cfg)
    assert secret not in json.dumps(recorded) and recorded["teacher_model"].startswith("openai+http://10.0.0.5:8000")
    assert _recorded(DistillConfig(teacher_model="models/teacher"))["teacher_model"] == "models/teacher"
