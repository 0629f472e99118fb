"""The run's report.html as a user sees it: one real small migration (tiny real models, embedded Qdrant), rolled back
and swapped again, its page rendered in headless Chromium, and rendered again where matplotlib cannot be imported.

The dimension table (``dims.json``) is written by ``plan --dims``; until that lands, the fixture makes one itself
with :mod:`qdrant_distill.migration.dims` classes from a PCA of the run's saved sample (numbers computed here, not made up).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from qdrant_distill import DistillConfig, PCAProjection
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.evaluation.metrics import fidelity
from qdrant_distill.folders import RunFolder
from qdrant_distill.migration.dims import DimsReport, DimsRow
from qdrant_distill.migration.journal import Journal
from qdrant_distill.migration.operate import rollback_run, swap_run
from qdrant_distill.migration.pipeline import migrate
from qdrant_distill.migration.report import (
    NO_CHARTS,
    RunFacts,
    qdrant_address,
    readable,
    summarize,
    write_report,
)
from qdrant_distill.migration.samples import load_sample
from tests.conftest import REPO
from tests.test_migration import DIM, build_source, config, write_beir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ("summary", "migrated", "alias", "dims", "training", "baselines", "backend", "bytes", "verify", "examples")


def dims_of(run_dir: Path) -> DimsReport:
    """The dimension table of the run's sample: PCA at a few sizes, measured on a held-out fifth."""
    sample = load_sample(RunFolder(run_dir).sample)
    vectors = sample.vectors / np.linalg.norm(sample.vectors, axis=1, keepdims=True)
    cut = len(vectors) * 4 // 5
    train, held = vectors[:cut], vectors[cut:]
    rows = []
    for dim in (4, 8, DIM, 32):
        projection = PCAProjection.fit(train, dim)
        scores = fidelity(projection.transform(held), held)
        rows.append(DimsRow(dim=dim, variance_kept=projection.explained_variance_ratio,
                            neighbour_recall_at_10=scores["fidelity/recall@10"], spearman=scores["fidelity/spearman"],
                            bytes_per_point={"float32": 4 * dim}, bytes_collection={"float32": 4 * dim * 240}))
    return DimsReport(teacher_dim=vectors.shape[1], points=240, sample_size=len(vectors), holdout_size=len(held),
                      rows=rows, recommended=8, reason="the smallest size keeping most neighbours", chosen=DIM)


@pytest.fixture(scope="module")
def run_dir(tiny_model_path: Path, teacher_path: Path, demo_texts: list[str],
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report") / "run"
    student = DistillConfig(base_model=str(tiny_model_path), max_steps=4, eval_steps=1, batch_size=16,
                            head_init_samples=64, early_stopping_patience=None)
    with QdrantConnector.open(location=":memory:") as conn:
        build_source(conn, demo_texts)
        # a teacher named (its check off: the stored vectors are random), so the report measures its speed too
        migrate(config(tiny_model_path, folder, student=student, teacher_model=str(teacher_path), teacher_check=False),
                connector=conn)
        assert RunFolder(folder).report.is_file()  # migrate writes it
        RunFolder(folder).dims.write_text(dims_of(folder).model_dump_json(), encoding="utf-8")
        rollback_run(folder, conn)  # each alias move refreshes the report
        swap_run(folder, conn)
    return folder


def test_the_report_has_every_section_with_charts_tables_and_examples(run_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    page = RunFolder(run_dir).report.read_text(encoding="utf-8")
    assert all(f'<section id="{s}"' in page for s in SECTIONS)
    assert page.count("<svg") == 3 and NO_CHARTS not in page  # dimension, training, bytes
    assert page.count("<table") >= 9
    assert "<script" not in page and "src=" not in page and "<link" not in page  # self-contained, nothing fetched
    # alias moves with times: the swap of migrate, the rollback, the swap again
    moves = page.split('<section id="alias">')[1].split("</section>")[0]
    assert moves.count("swapped") == 2 and moves.count("rolled back") == 1
    assert "docs_v1 -&gt; docs_v1_distilled16" in moves
    # the chosen size marked in the dimension table, the kept step in the training table
    assert f'<tr class="mark"><td>{DIM}</td>' in page
    distilled = json.loads(RunFolder(run_dir).distill.result.read_text(encoding="utf-8"))
    assert len(distilled["evaluations"]) == 5  # step 0 and every step of 4
    assert f'<tr class="mark"><td>{distilled["best_step"]}</td>' in page.split('id="training"')[1]
    assert f"the {readable(distilled['selection']['chosen'])} state won" in page
    # held-out examples, teacher and student neighbours side by side
    facts = json.loads(RunFolder(run_dir).report_data.read_text(encoding="utf-8"))
    assert page.count('class="example"') == len(facts["examples"]) == 3
    assert all(len(ex["teacher"]) == len(ex["student"]) == 5 for ex in facts["examples"])
    assert facts["qdrant"] == ":memory:" and facts["encode_per_s"] > 0 and facts["teacher_encode_per_s"] > 0
    # readable words, rounded numbers: no snake_case stage or metric key, no 4-decimal seconds
    assert "rolled_back" not in page and "fidelity/recall@10" not in page and "teacher-neighbour recall@10" in page
    took = page.split("<h3>Stages</h3>")[1].split("</table>")[0]
    assert re.search(r"<td>\d+\.\d s</td>", took) and not re.search(r"\d\.\d{3,} s", page)


def card_of(page: str) -> str:
    return page.split('<section id="summary" class="card">')[1].split("</section>")[0]


def test_the_page_opens_on_a_summary_card_that_says_whether_it_is_good(run_dir: Path) -> None:
    """Quality kept with what it means, bytes before and after, the student's query speed against the teacher's,
    the verdict, the next commands with this run folder; migrate prints the same lines."""
    page = RunFolder(run_dir).report.read_text(encoding="utf-8")
    assert page.index('id="summary"') < page.index('id="migrated"')  # first
    card = html.unescape(re.sub(r"<[^>]+>", " ", card_of(page)))
    journal, facts = Journal.load(run_dir), RunFacts.load(run_dir)
    recall = journal.metrics["fidelity/recall@10"]
    assert f"teacher-neighbour recall@10 {recall:.3f} on held-out points" in card
    assert "Of the 10 nearest neighbours the teacher finds for a held-out point" in card
    assert f"{facts.vector_bytes_before / 1e6:,.2f} MB -> {facts.vector_bytes_after / 1e6:,.2f} MB of vectors" in card
    assert f"(33%; 48 -> {DIM} dimensions)" in card
    ratio = facts.encode_per_s / facts.teacher_encode_per_s
    assert re.search(rf"student [\d,]+ queries/s on {journal.backend.value}, teacher [\d,]+ queries/s: {ratio:.1f}x",
                     card)
    assert f"passed the gate; swapped: alias docs -> {journal.target}" in card
    assert f"kept the {readable(journal.selection['chosen'])} state" in card
    assert f"qdrant-distill rollback {run_dir}" in card and f"qdrant-distill finalize {run_dir}" in card
    assert "drop docs_v1 for good" in card
    summary, flat = summarize(run_dir), " ".join(card.split())
    for part in (summary.quality, summary.meaning, summary.size, summary.speed, summary.verdict,
                 *(command for command, _ in summary.commands)):  # the lines migrate ends with
        assert part in flat and any(part in line for line in summary.lines())


def test_with_labelled_queries_the_card_compares_the_students_ndcg_with_the_teachers(
        tiny_model_path: Path, teacher_path: Path, demo_texts: list[str], tmp_path: Path) -> None:
    """Labelled queries and the teacher given: the run's dims.json holds the teacher's nDCG@10 (its queries against
    the stored vectors), and the card says what share of it the student kept."""
    from qdrant_distill import GateConfig

    write_beir(tmp_path / "beir", demo_texts)
    gate = GateConfig(min_recall_at_10=0.0, min_spearman=-1.0, min_ndcg_at_10=0.0, queries=str(tmp_path / "beir"))
    student = DistillConfig(base_model=str(tiny_model_path), max_steps=2, batch_size=16, head_init_samples=64,
                            early_stopping_patience=None, export="none")
    with QdrantConnector.open(location=":memory:") as conn:
        build_source(conn, demo_texts)
        migrate(config(tiny_model_path, tmp_path / "run", student=student, gate=gate, teacher_model=str(teacher_path),
                       teacher_check=False), connector=conn)
    teacher = DimsReport.read(RunFolder(tmp_path / "run").dims).teacher_ndcg_at_10
    ndcg = Journal.load(tmp_path / "run").metrics["labelled/ndcg@10"]
    assert teacher is not None and teacher > 0
    quality = summarize(tmp_path / "run").quality
    assert quality == f"nDCG@10 {ndcg:.3f} on labelled queries: {ndcg / teacher:.0%} of the teacher's {teacher:.3f}"
    card = html.unescape(card_of(RunFolder(tmp_path / "run").report.read_text(encoding="utf-8")))
    assert quality in card and "nDCG@10 scores the ranking of the judged documents" in card


def test_a_run_below_the_gate_says_so_and_what_to_do(tiny_model_path: Path, demo_texts: list[str],
                                                    tmp_path: Path) -> None:
    from qdrant_distill import GateConfig, GateFailed

    student = DistillConfig(base_model=str(tiny_model_path), max_steps=2, batch_size=16, head_init_samples=64,
                            early_stopping_patience=None, export="none")
    gate = GateConfig(min_recall_at_10=0.0, min_spearman=0.99)  # out of reach for a tiny random student
    run = tmp_path / "run"
    with QdrantConnector.open(location=":memory:") as conn:
        build_source(conn, demo_texts)
        with pytest.raises(GateFailed):
            migrate(config(tiny_model_path, run, student=student, gate=gate), connector=conn)
    spearman = Journal.load(run).metrics["fidelity/spearman"]
    summary = summarize(run)
    assert summary.verdict.endswith(f"not good enough: Spearman of similarities {spearman:.3f} < 0.99; nothing was "
                                    "swapped")
    assert [c for c, _ in summary.commands] == [f"qdrant-distill status {run}", f"qdrant-distill abandon {run}"]
    assert "rerun migrate with more training" in summary.commands[0][1]
    card = html.unescape(card_of(RunFolder(run).report.read_text(encoding="utf-8")))  # written however it ended
    assert summary.verdict in card


def test_the_dimension_chart_marks_the_students_own_point(run_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    page = RunFolder(run_dir).report.read_text(encoding="utf-8")
    dims = page.split('<section id="dims">')[1].split("</section>")[0]
    recall = Journal.load(run_dir).metrics["fidelity/recall@10"]
    assert f"The star is the student at {DIM}: neighbour recall@10 {recall:.3f} on its own holdout" in dims
    assert "fitted on" in dims and "held out" in dims  # which figure comes from which points


def test_every_string_is_escaped_and_a_server_shows_as_scheme_host_port(run_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    journal = Journal.load(copy)
    journal.target = '<b id="x">new</b>&co'
    journal.save()
    page = write_report(copy).read_text(encoding="utf-8")
    assert '<b id="x">' not in page and "&lt;b id=&quot;x&quot;&gt;new&lt;/b&gt;&amp;co" in page
    assert qdrant_address("https://user:secret@db.example:6333/p?api_key=k#f") == "https://db.example:6333"
    assert qdrant_address("https://***@[::1]:6333") == "https://[::1]:6333"
    assert qdrant_address("embedded:./qdrant_data") == "embedded:./qdrant_data"


FRAME = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin:0">
<iframe id="f" style="border:0;width:{width}px;height:{height}px" srcdoc="{page}"></iframe>
<script>
window.addEventListener("load", () => {{
  const d = document.getElementById("f").contentDocument, w = d.defaultView, box = e => e.getBoundingClientRect();
  const svg = d.querySelector("figure.chart svg"), card = d.getElementById("summary");
  document.body.setAttribute("data-measured", JSON.stringify({{
    page: d.documentElement.scrollWidth, view: w.innerWidth, h1: box(d.querySelector("h1")).right,
    card_top: box(card).top, card_right: box(card).right,
    chart_px_per_pt: box(svg).width / svg.viewBox.baseVal.width}}));
}});
</script></body></html>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test-tools.sh installs it as root)")
@pytest.mark.parametrize("width", [1280, 390])
def test_the_report_reads_in_headless_chromium_on_a_desktop_and_a_phone(run_dir: Path, tmp_path: Path,
                                                                      width: int) -> None:
    """Screenshots at 1280 and 390 px wide; the page itself does not run off the edge (tables scroll in their own
    box), the title wraps, the summary card comes first and chart text stays readable. Headless Chromium keeps a
    window at least 500 px wide, so the page is shown in a frame of the width (its viewport, media queries and all),
    and a script of the framing page measures it (the report itself carries none)."""
    pytest.importorskip("matplotlib")
    image = pytest.importorskip("PIL.Image")
    page = RunFolder(run_dir).report.read_text(encoding="utf-8")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    height = 1600
    frame = tmp_path / "frame.html"
    frame.write_text(FRAME.format(width=width, height=height, page=html.escape(page, quote=True)), encoding="utf-8")
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={max(width, 800)},{height}",
            "--virtual-time-budget=10000"]
    shot = tmp_path / f"report-{width}.png"
    subprocess.run([*base, f"--screenshot={shot}", frame.resolve().as_uri()], check=True, capture_output=True,
                   timeout=180)
    dom = subprocess.run([*base, "--dump-dom", frame.resolve().as_uri()], check=True, capture_output=True, text=True,
                         timeout=180).stdout
    pixels = np.asarray(image.open(shot).convert("RGB"))[:, :width]
    image.fromarray(pixels).save(shot)
    assert pixels.shape[:2] == (height, width)
    inked = (pixels.min(axis=2) < 200).mean()  # not blank: the title, the card, tables drawn
    assert inked > 0.01 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    card_red = (np.abs(pixels[:700].astype(int) - (220, 36, 76)).sum(axis=2) < 60).mean()  # the card's red border
    assert card_red > 0.001
    measured = json.loads(html.unescape(dom.split('data-measured="')[1].split('"')[0]))
    assert measured["page"] <= measured["view"] == width  # nothing runs off the edge
    assert measured["h1"] <= width and measured["card_right"] <= width and measured["card_top"] < 400
    assert 12 * measured["chart_px_per_pt"] >= 10  # 12 pt chart text is at least 10 px on screen
    keep = Path(os.environ.get("REPORT_SHOTS", tmp_path)) / shot.name  # to look at
    if keep.resolve() != shot.resolve():
        shutil.copy(shot, keep)


BLOCKED_CHILD = textwrap.dedent('''
    import importlib.abc, json, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("matplotlib", "torch"):
                raise ImportError(f"blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, Blocker())
    from qdrant_distill.migration.report import write_report

    page = write_report(sys.argv[1]).read_text(encoding="utf-8")
    print(json.dumps({"page": page, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("matplotlib", "torch"))}))
''')


def test_without_matplotlib_the_report_is_tables_and_a_note(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    done = subprocess.run([sys.executable, "-c", BLOCKED_CHILD, str(copy)], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    page = result["page"]
    assert result["loaded"] == []  # neither matplotlib nor torch
    assert "<svg" not in page and page.count(html.escape(NO_CHARTS)) == 1
    assert page.count("<table") >= 9 and all(f'<section id="{s}"' in page for s in SECTIONS)
    assert f'<tr class="mark"><td>{DIM}</td>' in page


def test_status_html_writes_the_report_and_prints_its_path(run_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from qdrant_distill.cli.app import app

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    RunFolder(copy).report.unlink()
    result = CliRunner().invoke(app, ["status", str(copy), "--html"])
    assert result.exit_code == 0, result.output
    assert Path(result.output.strip()) == RunFolder(copy).report.resolve() and RunFolder(copy).report.is_file()
