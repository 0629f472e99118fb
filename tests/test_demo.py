"""The demo flow with tiny models standing in for mpnet and MiniLM (the real run is `make demo`)."""

from __future__ import annotations

from qdrant_distill import GateConfig, Stage
from qdrant_distill.cli.demo import DEMO_ALIAS, DEMO_COLLECTION, DEMO_QUERIES, run_demo
from qdrant_distill.connectors import QdrantConnector


def test_demo_builds_migrates_and_answers(tiny_model_path, tmp_path, capsys) -> None:
    store = tmp_path / "q"
    kwargs = dict(path=str(store), teacher=str(tiny_model_path), student=str(tiny_model_path),
                  cache_dir=str(tmp_path / "cache"), run_dir=str(tmp_path / "run"), limit=150, dim=8,
                  gate=GateConfig(min_recall_at_10=0, min_spearman=-1), progress=False)
    report, answers = run_demo(**kwargs)
    assert report.stage is Stage.SWAPPED and report.points_written == 150
    assert "recommended 8" in capsys.readouterr().out  # the dimension table the migration wrote
    assert [a[0] for a in answers] == list(DEMO_QUERIES)
    assert all(len(teacher) == 3 and len(student) == 3 for _, teacher, student in answers)
    assert list((tmp_path / "cache").glob("demo_teacher_*.npy"))  # teacher vectors cached for the next run
    report, _ = run_demo(**kwargs)  # runs again from scratch on the same store
    with QdrantConnector.open(path=str(store)) as conn:
        assert conn.alias_target(DEMO_ALIAS) == report.target and conn.count(DEMO_COLLECTION) == 150
