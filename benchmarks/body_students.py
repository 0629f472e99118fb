"""Transformer students with their whole body trained (benchmarks/body_recipe.py) on SciFact, two settings:

A  project mode, original teacher (mpnet): documents keep the centred PCA-128 of their stored vectors; a MiniLM-size
   query encoder (all-MiniLM-L6-v2 + Dense 384->128) is trained onto the PCA of the stored document vectors and of
   the teacher's labels of N query-like cuts (the learning curve: N = 0, 5k, 10k, 20k).
B  reembed mode, fully tuned teacher (full): the same student encodes documents and queries, trained onto the full
   teacher's PCA-128 of the stored document vectors and of its labels of 20k cuts.

Students see corpus text, stored vectors and teacher labels of cuts only. 5% of the documents (common.holdout_split)
and 1,000 of the 20,000 cuts are held out; the kept epoch is the holdout's best teacher-neighbour recall@10. The test
(300) and dev (809 train queries) columns are measured at every epoch for the curve only.

    python benchmarks/body_students.py run --setting A --cuts 20000 --epochs 3     # one run (resumable), cached
    python benchmarks/body_students.py table                                        # every finished run ->
                                                                                    # benchmarks/results/body_students.json
Runs live under benchmarks/cache/body/<name>/ (epoch folders, history.json, per-query scores, row.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import transfer_common as tc
from body_recipe import Holdout, Recipe, encode, kept_epoch, train_body_student
from common import CACHE, DATA, DIM, MINILM, RESULTS, cached, holdout_split
from labels import load_labels

from qdrant_distill.inference.projection import PCAProjection

tc.TEACHER_FILES.setdefault("full", "teacher_mpnet-scifact-full.npz")
RUNS = CACHE / "body"
N_HOLD_CUTS = 1000
QUERY_LEN = 128
logger = logging.getLogger("benchmarks.body_students")


def uptime() -> str:
    return subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()


def labels_for(teacher: str) -> tuple[list[str], np.ndarray, float]:
    """The 20,000 cuts with the teacher's labels and the seconds labelling took."""
    if teacher == "full":
        data = np.load(DATA / "scifact" / "labels_mpnet-scifact-full.npz", allow_pickle=True)
        return [str(t) for t in data["texts"]], data["vecs"].astype(np.float32), float(data["seconds"])
    return load_labels(teacher, 20000)


def cut_split(n_total: int, n_cuts: int) -> tuple[np.ndarray, np.ndarray]:
    """The held-out cuts (fixed 1,000 of all) and the training cuts among the first ``n_cuts``."""
    hold = np.sort(np.random.default_rng(0).permutation(n_total)[:N_HOLD_CUTS])
    held = set(hold.tolist())
    return hold, np.array([i for i in range(n_cuts) if i not in held], dtype=int)


def token_count(texts: list[str]) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(MINILM))
    return int(sum(len(r) for r in tok(texts, add_special_tokens=False)["input_ids"]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    teacher, mode = ("mpnet", "project") if args.setting == "A" else ("full", "reembed")
    col = tc.load_collection(teacher)
    hold_docs, train_docs = holdout_split(len(col.docs))
    if args.tiny:
        hold_docs, train_docs = hold_docs[:20], train_docs[:40]
    targets = col.targets
    texts = [col.docs[i] for i in train_docs]
    goals = [targets[train_docs]]
    lengths = [args.doc_len] * len(texts)
    hold_texts, hold_goals = [col.docs[i] for i in hold_docs], [targets[hold_docs]]
    hold_lengths = [args.doc_len] * len(hold_texts)
    label_s, label_tokens, n_train_cuts = 0.0, 0, 0
    if args.cuts or args.setting == "B":
        cuts, vecs, seconds = labels_for(teacher)
        hold_c, train_c = cut_split(len(cuts), args.cuts)
        if args.tiny:
            hold_c, train_c = hold_c[:20], train_c[:40]
        cut_targets = col.pca.transform(vecs)
        texts += [cuts[i] for i in train_c]
        goals.append(cut_targets[train_c])
        lengths += [args.cut_len] * len(train_c)
        hold_texts += [cuts[i] for i in hold_c]
        hold_goals.append(cut_targets[hold_c])
        hold_lengths += [args.cut_len] * len(hold_c)
        label_s = seconds * args.cuts / len(cuts)
        label_tokens = token_count([cuts[i] for i in range(args.cuts)])
        n_train_cuts = len(train_c)
    holdout = Holdout(hold_texts, np.concatenate(hold_goals), targets, hold_lengths)
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch, lr=args.lr, head_lr=args.head_lr,
                    checkpoint_every_s=args.checkpoint_s, evals_per_epoch=args.evals_per_epoch, eval_every_s=args.eval_every_s,
                    ridge_sample=args.ridge_sample)
    folder = RUNS / args.name
    folder.mkdir(parents=True, exist_ok=True)
    load_start = uptime()
    began = time.perf_counter()

    def on_epoch(student: Any, epoch: float) -> dict[str, Any]:
        return measure(student, col, mode, folder, epoch, args)

    def progress(p: dict[str, Any]) -> None:
        logger.info("epoch %d batch %d/%d loss %.4f lr %.2e elapsed %.0fs eta %.0fs", p["epoch"], p["batch"],
                    p["batches"], p["loss"], p["lr"], p["elapsed_s"], p["eta_s"])

    student, history = train_body_student(MINILM, texts, np.concatenate(goals), max_seq_length=lengths,
                                          recipe=recipe, holdout=holdout, checkpoint_dir=folder,
                                          time_budget_s=args.budget_s, progress=progress, on_epoch=on_epoch)
    kept = next(h for h in history if h["epoch"] == kept_epoch(history))
    if "ndcg_test" not in kept:  # measured after training when the epochs were not (--measure-from)
        kept.update(measure(student, col, mode, folder, kept["epoch"], args, force=True))
    row = {"name": args.name, "tiny": args.tiny, "setting": args.setting, "teacher": teacher, "kind": "transformer", "mode": mode,
           "recipe": {**asdict(recipe), "doc_len": args.doc_len, "cut_len": args.cut_len, "query_len": QUERY_LEN,
                      "doc_eval_len": args.doc_eval_len if mode == "reembed" else None, "budget_s": args.budget_s},
           "train_docs": len(train_docs), "train_cuts": n_train_cuts, "cuts": args.cuts,
           "labelling": {"seconds": label_s, "tokens": label_tokens,
                         "texts_per_s": args.cuts / label_s if label_s else None},
           "history": history, "kept_epoch": kept_epoch(history),
           "kept_by": "holdout teacher-neighbour recall@10 (5% documents + 1,000 cuts held out)",
           "wall_s_this_process": time.perf_counter() - began, "load_start": load_start, "load_end": uptime()}
    (folder / "row.json").write_text(json.dumps(row, indent=1, default=str))
    if args.save_to:
        student.save(str(args.save_to))
    return row


def measure(student: Any, col: tc.Collection, mode: str, folder: Path, epoch: float, args: argparse.Namespace,
            *, force: bool = False) -> dict[str, Any]:
    """Test and dev nDCG@10 of the student at this epoch (reporting only); per-query scores saved for intervals."""
    if args.tiny or (epoch < args.measure_from and not force):
        return {}
    if mode == "project":
        docs = col.targets
    else:
        docs = encode(student, col.docs, args.doc_eval_len)
    out: dict[str, Any] = {}
    scores = {}
    for split_name, split in (("test", col.test), ("dev", col.dev)):
        q = encode(student, split.queries, QUERY_LEN)
        scores[split_name] = tc.per_query_ndcg(q, docs, split, col.doc_ids)
        out[f"ndcg_{split_name}"] = float(scores[split_name].mean())
    np.savez(folder / f"scores-epoch-{round(epoch, 3):g}.npz", **scores)
    logger.info("epoch %s: test %.4f dev %.4f", epoch, out["ndcg_test"], out["ndcg_dev"])
    return out


# ----------------------------------------------------------------------------------------------------- baselines
def baselines(teacher: str) -> dict[str, dict[str, np.ndarray]]:
    """Per-query nDCG@10 (test, dev) of the teacher + its centred PCA-128, and for ``full`` MiniLM's own PCA-128."""
    col = tc.load_collection(teacher)
    out = {f"{teacher} teacher + PCA-128": {s: tc.per_query_ndcg(col.pca.transform(sp.teacher_queries), col.targets,
                                                                 sp, col.doc_ids)
                                            for s, sp in (("test", col.test), ("dev", col.dev))}}
    if teacher == "full":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(MINILM), device="cpu")
        enc = lambda texts: model.encode(texts, batch_size=32, normalize_embeddings=True)
        docs = cached("minilm-docs", col.docs, enc)
        pca = PCAProjection.fit(docs, DIM, center=False)
        out["MiniLM own PCA-128"] = {s: tc.per_query_ndcg(pca.transform(cached("minilm-q", sp.queries, enc)),
                                                          pca.transform(docs), sp, col.doc_ids)
                                     for s, sp in (("test", col.test), ("dev", col.dev))}
    return out


def interval(a: np.ndarray, b: np.ndarray) -> list[float]:
    return [round(x, 4) for x in tc.paired_bootstrap(a, b)]


def table(_: argparse.Namespace) -> None:
    rows = []
    base = {t: baselines(t) for t in ("mpnet", "full")}
    for path in sorted(RUNS.glob("*/row.json")):
        row = json.loads(path.read_text())
        if row.get("tiny"):
            continue
        kept = row["kept_epoch"]
        scores = np.load(path.parent / f"scores-epoch-{kept:g}.npz")
        vs = {}
        if (path.parent / "scores-epoch-0.npz").exists():
            start = np.load(path.parent / "scores-epoch-0.npz")
            vs["ridge start (epoch 0, body untrained)"] = interval(scores["test"], start["test"])
        for name, b in base[row["teacher"]].items():
            vs[name] = interval(scores["test"], b["test"])
        h = next(h for h in row["history"] if h["epoch"] == kept)
        rows.append({**{k: row[k] for k in ("name", "teacher", "kind", "mode", "recipe", "train_docs",
                                            "train_cuts", "labelling", "kept_epoch", "kept_by", "load_start",
                                            "load_end")},
                     "ndcg_test": h["ndcg_test"], "ndcg_dev": h["ndcg_dev"], "holdout": h["holdout"],
                     "distill_s": h["train_s"], "vs": vs,
                     "curve": [{k: e.get(k) for k in ("epoch", "train_s", "loss", "holdout", "ndcg_test",
                                                      "ndcg_dev")} for e in row["history"]]})
    result = {"baselines": {t: {n: {s: float(v.mean()) for s, v in b.items()} for n, b in bs.items()}
                            for t, bs in base.items()}, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "body_students.json").write_text(json.dumps(result, indent=2))
    print(render(result))


def render(result: dict[str, Any]) -> str:
    lines = ["| teacher | baseline | test | dev |", "|---|---|---|---|"]
    for t, bs in result["baselines"].items():
        lines += [f"| {t} | {n} | {v['test']:.4f} | {v['dev']:.4f} |" for n, v in bs.items()]
    lines += ["", "| run | teacher | mode | cuts | kept epoch | test | dev | distill s | vs (mean [95%]) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        vs = "; ".join(f"{n}: {m:+.4f} [{lo:+.4f}, {hi:+.4f}]" for n, (m, lo, hi) in r["vs"].items())
        lines.append(f"| {r['name']} | {r['teacher']} | {r['mode']} | {r['train_cuts']} | {r['kept_epoch']} | "
                     f"{r['ndcg_test']:.4f} | {r['ndcg_dev']:.4f} | {r['distill_s']:.0f} | {vs} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--setting", choices=["A", "B"], required=True)
    r.add_argument("--name", required=True)
    r.add_argument("--cuts", type=int, default=20000)
    r.add_argument("--epochs", type=int, default=3)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--lr", type=float, default=5e-5)
    r.add_argument("--head-lr", type=float, default=1e-3)
    r.add_argument("--doc-len", type=int, default=128, help="token limit of documents in training")
    r.add_argument("--doc-eval-len", type=int, default=256, help="token limit of documents when encoded (B)")
    r.add_argument("--cut-len", type=int, default=64)
    r.add_argument("--budget-s", type=float, default=None)
    r.add_argument("--checkpoint-s", type=float, default=600)
    r.add_argument("--measure-from", type=float, default=0,
                   help="measure test/dev from this epoch on (the kept student is always measured)")
    r.add_argument("--evals-per-epoch", type=int, default=1)
    r.add_argument("--eval-every-s", type=float, default=None, help="also evaluate every so many training seconds")
    r.add_argument("--ridge-sample", type=int, default=4000)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--save-to", type=Path, default=None)
    r.add_argument("--tiny", action="store_true", help="a few dozen texts, to check the code")
    sub.add_parser("table")
    sub.add_parser("baselines", help="compute (and cache) the baselines' encodings only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    import torch

    if args.cmd == "run":
        torch.set_num_threads(args.threads)
        row = run(args)
        print(json.dumps({k: row[k] for k in ("name", "kept_epoch", "history")}, indent=1, default=str))
    elif args.cmd == "baselines":
        torch.set_num_threads(int(os.environ.get("THREADS", "2")))
        for teacher in ("mpnet", "full"):
            for name, b in baselines(teacher).items():
                print(teacher, name, {s: round(float(v.mean()), 4) for s, v in b.items()})
    else:
        torch.set_num_threads(int(os.environ.get("THREADS", "2")))
        table(args)


if __name__ == "__main__":
    main()
