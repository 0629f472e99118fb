"""A teacher worth distilling: all-mpnet-base-v2 tuned on SciFact's *train* split, and its vectors.

    .venv/bin/python benchmarks/tuned_teacher.py            # the shipped LoRA adapter merged (seconds) and checked
    .venv/bin/python benchmarks/tuned_teacher.py --full-finetune          # ~30 min training + ~40 min embedding
    .venv/bin/python benchmarks/tuned_teacher.py --full-finetune --quick  # a smoke run: 40 pairs, 1 epoch, 200 docs

By default the tuned teacher is base + the LoRA adapter in ../shared/models/mpnet-scifact-lora, merged with peft
into benchmarks/cache/tuned-mpnet-lora/ (a plain sentence-transformers folder), and its vectors are the shipped
../shared/data/scifact/teacher_mpnet-scifact-lora.npz (not recomputed). The merged model is checked against them the
way the project's teacher check does (mean cosine >= 0.999 over 30 documents and 20 queries).

The full fine-tune (all layers, a stronger teacher):
The recipe (fixed, seeded): the 809 train queries with their 919 (query, judged document) pairs from
../shared/data/scifact, MultipleNegativesRankingLoss (in-batch negatives, scale 20, batches without a repeated query
or document), batch 16, AdamW lr 3e-5, 10% linear warm-up then linear decay, max_seq_length 192, 2 epochs, seed 0.
Writes benchmarks/cache/tuned-mpnet/ (the model, max_seq_length 256 for encoding) and
benchmarks/cache/scifact_tuned-mpnet.npz (doc_ids, doc_vecs, query_ids, query_vecs: the shape of the shared teacher
file), both git-ignored; a finished step is not redone. Students never see the train queries or their labels: only
the corpus text, these stored document vectors, and what the tuned teacher labels for them.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
from common import CACHE, MPNET, REPO

from qdrant_distill import load_beir, load_encoder
from qdrant_distill.inference.encoders import encode_with_progress

DATA = REPO.parent / "shared" / "data" / "scifact"
RECIPE = {"epochs": 2, "batch_size": 16, "lr": 3e-5, "warmup_ratio": 0.1, "max_seq_length": 192, "seed": 0,
          "scale": 20.0, "encode_max_seq_length": 256}
logger = logging.getLogger("benchmarks.tuned_teacher")


ADAPTER = REPO.parent / "shared" / "models" / "mpnet-scifact-lora"
SHIPPED = DATA / "teacher_mpnet-scifact-lora.npz"
MERGED = CACHE / "tuned-mpnet-lora"


def merged_teacher(adapter: Path = ADAPTER, out: Path = MERGED) -> Path:
    """The tuned teacher: all-mpnet-base-v2 + the shipped LoRA adapter, merged with peft (seconds) into a plain
    sentence-transformers folder (cached)."""
    if (out / "modules.json").is_file():
        return out
    from peft import PeftModel
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(MPNET), device="cpu")
    model[0].auto_model = PeftModel.from_pretrained(model[0].auto_model, str(adapter)).merge_and_unload()
    model.max_seq_length = RECIPE["encode_max_seq_length"]
    model.save(str(out))
    return out


def train_pairs(quick: bool) -> list[tuple[str, str]]:
    """(train query, judged document text) pairs."""
    data = load_beir(DATA, split="train")
    texts = dict(zip(data.doc_ids, data.doc_texts))
    pairs = [(q, texts[d]) for qid, q in zip(data.query_ids, data.queries) for d in data.qrels[qid] if d in texts]
    return pairs[:40] if quick else pairs


def batches(pairs: list[tuple[str, str]], size: int, rng: random.Random) -> list[list[tuple[str, str]]]:
    """Shuffled batches in which no query and no document appears twice (no false in-batch negatives)."""
    order = pairs[:]
    rng.shuffle(order)
    out: list[list[tuple[str, str]]] = []
    pending = order
    while pending:
        batch, seen, rest = [], set(), []
        for q, d in pending:
            if len(batch) < size and q not in seen and d not in seen:
                batch.append((q, d))
                seen.update((q, d))
            else:
                rest.append((q, d))
        out.append(batch)
        pending = rest
    return out


def fine_tune(pairs: list[tuple[str, str]], epochs: int, out: Path) -> dict[str, float]:
    import torch
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    from qdrant_distill.distillation.students import load_body

    rng = random.Random(RECIPE["seed"])
    torch.manual_seed(RECIPE["seed"])
    model = load_body(str(MPNET), max_seq_length=RECIPE["max_seq_length"])
    loss_fn = MultipleNegativesRankingLoss(model, scale=RECIPE["scale"])
    plan = [batches(pairs, RECIPE["batch_size"], rng) for _ in range(epochs)]
    total = sum(len(p) for p in plan)
    opt = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"])
    warm = max(1, int(total * RECIPE["warmup_ratio"]))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    model.train()
    step, started, losses = 0, time.perf_counter(), []
    for epoch, epoch_batches in enumerate(plan):
        for batch in epoch_batches:
            features = [model.tokenize([q for q, _ in batch]), model.tokenize([d for _, d in batch])]
            loss = loss_fn(features, None)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss))
            if step % 10 == 0 or step == total:
                logger.info("epoch %d step %d/%d loss %.4f (%.0f s)", epoch + 1, step, total,
                            float(np.mean(losses[-10:])), time.perf_counter() - started)
    model.max_seq_length = RECIPE["encode_max_seq_length"]
    model.save(str(out))
    stats = {"steps": step, "train_pairs": len(pairs), "first_loss": losses[0], "last_loss": float(np.mean(losses[-10:])),
             "train_s": time.perf_counter() - started}
    (out / "tuned_teacher.json").write_text(json.dumps({"recipe": RECIPE, **stats}, indent=2), encoding="utf-8")
    return stats


def embed(model_dir: Path, out: Path, quick: bool) -> None:
    data = load_beir(DATA, split="test")
    queries = load_beir(DATA, split="train")
    doc_ids, docs = data.doc_ids, data.doc_texts
    if quick:
        doc_ids, docs = doc_ids[:200], docs[:200]
    query_ids, query_texts = data.query_ids + queries.query_ids, data.queries + queries.queries
    teacher = load_encoder(model_dir, batch_size=16)
    order = np.argsort([-len(d) for d in docs])  # long first: memory peaks early, batches of alike length
    started = time.perf_counter()
    doc_vecs = np.empty((len(docs), teacher.dim), dtype=np.float32)
    doc_vecs[order] = encode_with_progress(teacher, [docs[i] for i in order], kind="document", chunk=128,
                                           description="tuned teacher: corpus")
    query_vecs = encode_with_progress(teacher, query_texts, kind="query", description="tuned teacher: queries")
    np.savez(out, doc_ids=np.array(doc_ids), doc_vecs=doc_vecs, query_ids=np.array(query_ids), query_vecs=query_vecs)
    logger.info("embedded %d documents and %d queries in %.0f s", len(docs), len(query_texts),
                time.perf_counter() - started)


def check_merged(model_dir: Path, docs: int = 30, queries: int = 20) -> dict[str, float]:
    """The merged model against the shipped vectors: mean and lowest cosine over a few documents and queries."""
    shipped = np.load(SHIPPED)
    data, train = load_beir(DATA, split="test"), load_beir(DATA, split="train")
    texts = dict(zip(data.doc_ids, data.doc_texts))
    qtexts = dict(zip(data.query_ids + train.query_ids, data.queries + train.queries))
    teacher = load_encoder(model_dir, backend="torch", batch_size=8)
    d_ids = [str(i) for i in shipped["doc_ids"][:docs]]
    q_ids = [str(i) for i in shipped["query_ids"][:queries]]
    d = teacher.encode([texts[i] for i in d_ids], kind="document")
    q = teacher.encode([qtexts[i] for i in q_ids], kind="query")
    cos = np.concatenate([(d * shipped["doc_vecs"][:docs]).sum(1), (q * shipped["query_vecs"][:queries]).sum(1)])
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()), "texts": len(cos)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full-finetune", action="store_true", help="train all layers instead (~70 CPU minutes)")
    parser.add_argument("--quick", action="store_true", help="with --full-finetune: a smoke run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.full_finetune:
        started = time.perf_counter()
        model_dir = merged_teacher()
        merged_s = time.perf_counter() - started
        check = check_merged(model_dir)
        print(f"tuned teacher (base + LoRA, merged in {merged_s:.1f} s): {model_dir}\nvectors: {SHIPPED}\n"
              f"check: mean cosine {check['mean_cosine']:.6f}, lowest {check['min_cosine']:.6f} over "
              f"{check['texts']} texts")
        if check["mean_cosine"] < 0.999:
            raise SystemExit("the merged teacher does not reproduce the shipped vectors (mean cosine < 0.999)")
        return
    tag = "tuned-mpnet-quick" if args.quick else "tuned-mpnet"
    model_dir, vectors = CACHE / tag, CACHE / f"scifact_{tag}.npz"
    if not (model_dir / "tuned_teacher.json").exists():
        stats = fine_tune(train_pairs(args.quick), 1 if args.quick else RECIPE["epochs"], model_dir)
        logger.info("fine-tuned: %s", stats)
    if not vectors.exists():
        embed(model_dir, vectors, args.quick)
    print(f"tuned teacher: {model_dir}\nvectors: {vectors}")


if __name__ == "__main__":
    main()
