"""Configuration from code, files and environment; the journal's identity checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from qdrant_distill import (
    ConfigError,
    DimensionError,
    Journal,
    MigrationError,
    Stage,
    load_config,
)


def test_file_env_and_overrides_in_order(tmp_path: Path) -> None:
    toml = tmp_path / "m.toml"
    toml.write_text('source = "docs"\ndim = 64\n[student]\nepochs = 3\n[gate]\nmin_spearman = 0.5\n')
    env = {"QDRANT_DISTILL_DIM": "96", "QDRANT_URL": "http://qdrant:6333", "QDRANT_API_KEY": "k3y",
           "QDRANT_DISTILL_STUDENT__BATCH_SIZE": "8"}
    cfg = load_config(toml, environ=env, sample_size=100)
    assert (cfg.source, cfg.dim, cfg.sample_size) == ("docs", 96, 100)
    assert cfg.student.epochs == 3 and cfg.student.batch_size == 8 and cfg.gate.min_spearman == 0.5
    assert cfg.qdrant.url == "http://qdrant:6333" and cfg.qdrant.api_key.get_secret_value() == "k3y"
    assert "k3y" not in repr(cfg) and "k3y" not in str(cfg.fingerprint()) and "k3y" not in cfg.model_dump_json()


def test_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("source: docs\nmode: project\n")
    (tmp_path / "m.json").write_text('{"source": "docs", "text_template": "{title} {text}"}')
    assert load_config(tmp_path / "m.yaml", environ={}).mode.value == "project"
    assert load_config(tmp_path / "m.json", environ={}).text.fields == ["title", "text"]


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        (None, ConfigError, "cannot read config file"),
        ("source = ", ConfigError, "cannot parse config file"),
        ('source = "d"\ndim = 0', DimensionError, "must be >= 1"),
        ('source = "d"\nmode = "fast"', ConfigError, "invalid configuration: mode"),
        ('source = "d"\nbogus = 1', ConfigError, "bogus"),
        ('source = "d"\ntext_field = "a"\ntext_template = "{b}"', ConfigError, "not both"),
        ('source = "d"\n[qdrant]\nurl = "qdrant:6333"', ConfigError, "bad Qdrant URL"),
    ],
)
def test_bad_configs(tmp_path: Path, content: str | None, error: type, match: str) -> None:
    path = tmp_path / "bad.toml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=match):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("bin.toml", b"dim = 8\n\xff\xfe\x00source = '\xe9'\n", "not UTF-8 text"),
        ("list.yaml", b"- ab\n", "must hold a table/mapping at the top"),
        ("list.json", b"[1]", "must hold a table/mapping at the top"),
        ("bad.json", b"{source: 1}", "cannot parse config file"),
        ("folder.toml", None, "cannot read config file .*: Is a directory"),
    ],
)
def test_a_file_that_cannot_load_is_one_config_error(tmp_path: Path, name: str, content: bytes | None,
                                                     match: str) -> None:
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=match) as info:
        load_config(path, environ={})
    assert "\n" not in str(info.value)  # one line


def test_invalid_values_name_the_first_and_count_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid configuration: student.epochs: ") as info:
        load_config(environ={"QDRANT_DISTILL_STUDENT__EPOCHS": "many", "QDRANT_DISTILL_SAMPLE_SIZE": "x"}, source="d")
    assert info.value.errors == 2
    with pytest.raises(ConfigError, match="invalid configuration: .*student"):
        load_config(environ={"QDRANT_DISTILL_STUDENT": "{not json"}, source="d")


def test_the_environment_applies_only_through_load_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from qdrant_distill import MigrationConfig

    monkeypatch.setenv("QDRANT_DISTILL_DIM", "77")
    monkeypatch.setenv("QDRANT_DISTILL_SERVE_API_KEY", "not a migration setting")  # ignored, not refused
    assert MigrationConfig(source="d").dim == 128
    assert load_config(source="d").dim == 77  # os.environ by default ...
    assert load_config(environ={}, source="d").dim == 128  # ... or exactly the mapping given
    assert type(load_config(source="d")) is MigrationConfig


def test_none_overrides_are_not_given_and_set_fields_are_kept() -> None:
    env = {"QDRANT_DISTILL_DIM": "64", "QDRANT_DISTILL_STUDENT__EPOCHS": "5", "QDRANT_URL": "http://a:1",
           "QDRANT_DISTILL_QDRANT__URL": "http://b:2"}
    cfg = load_config(environ=env, source="d", dim=None, student={"epochs": None, "max_steps": 3})
    assert (cfg.dim, cfg.student.epochs, cfg.student.max_steps) == (64, 5, 3)
    assert cfg.qdrant.url == "http://b:2"  # the prefixed variable wins over QDRANT_URL
    assert cfg.student.model_fields_set == {"epochs", "max_steps"}  # what the user gave, as code reads it


def test_journal_is_atomic_and_refuses_other_migrations(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, {"source": "docs", "dim": 128})
    journal.advance(Stage.SAMPLED, sample_size=10)
    again = Journal.open(tmp_path, {"source": "docs", "dim": 128})
    assert again.stage is Stage.SAMPLED and again.sample_size == 10 and again.run_id == journal.run_id
    assert [p.name for p in tmp_path.iterdir()] == ["journal.json"]  # no temporary files left behind
    with pytest.raises(MigrationError, match=r"differs in \['dim'\]"):
        Journal.open(tmp_path, {"source": "docs", "dim": 64})
    with pytest.raises(MigrationError, match="no migration journal"):
        Journal.load(tmp_path / "elsewhere")


def test_credentials_in_a_url_are_never_shown() -> None:
    cfg = load_config(environ={}, source="docs", qdrant={"url": "https://admin:hunter2@qdrant.example:6333"})
    assert cfg.qdrant.target == "https://qdrant.example:6333"  # scheme, host and port only (redact_url)
    assert "hunter2" not in str(cfg.fingerprint())


def test_a_temporary_file_left_by_a_kill_is_removed(tmp_path: Path) -> None:
    Journal.open(tmp_path, {"source": "docs"})
    (tmp_path / ".journal-abc123").write_text("{half a journ")
    Journal.open(tmp_path, {"source": "docs"})
    assert [p.name for p in tmp_path.iterdir()] == ["journal.json"]


def test_a_journal_that_cannot_be_written_is_one_typed_error(tmp_path) -> None:
    """A full disk or a folder gone: MigrationError naming the journal, no temporary file left behind."""
    import shutil

    from qdrant_distill.errors import MigrationError
    from qdrant_distill.migration.journal import Journal

    journal = Journal.open(tmp_path / "run", {"source": "docs"})
    shutil.rmtree(tmp_path / "run")
    with pytest.raises(MigrationError, match="cannot write the journal"):
        journal.save()
    (tmp_path / "file").write_text("x")
    with pytest.raises(MigrationError, match="cannot create the run folder"):
        Journal.open(tmp_path / "file" / "run", {"source": "docs"})


def test_a_migration_declares_size_teacher_and_encode_batch_once() -> None:
    from qdrant_distill.distillation.config import DistillConfig
    from qdrant_distill.migration.config import MigrationConfig

    cfg = MigrationConfig(source="docs", dim=16, teacher_model="t", encode_batch_size=8,
                          student=DistillConfig(base_model="b"))
    derived = cfg.distill_config()
    assert (derived.dim, derived.teacher_model, derived.encode_batch_size, derived.base_model) == (16, "t", 8, "b")
    with pytest.raises(ConfigError, match="student.dim = 32 contradicts the migration's dim = 16"):
        MigrationConfig(source="docs", dim=16, student=DistillConfig(dim=32))
    with pytest.raises(ConfigError, match="student.teacher_model"):
        load_config(environ={}, source="docs", teacher_model="a", student={"teacher_model": "b"})
    assert MigrationConfig(source="docs", dim=16, student=DistillConfig(dim=16)).distill_config().dim == 16
