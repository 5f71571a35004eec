"""The near-duplicate threshold, measured on real data: how close do human-written GSM8K rows come
to each other, and how close are clear paraphrases?

    python benchmarks/neardup_threshold.py [--data ../shared/data/gsm8k/train.jsonl] [--fields question answer]

Embeds every row of GSM8K train (the fields joined with a space, as treesynth embeds a row) with
the project's embedder (all-MiniLM-L6-v2, unit vectors; the second run reads the embedding cache),
then prints the distribution of each row's nearest-neighbour cosine (exact, blocked matrix
products), how many rows a threshold would flag, the closest pairs, and the cosines of hand-made
paraphrase pairs (a name changed, a number changed, the same problem reworded). The threshold
``DEFAULT_NEAR_DUP_COSINE`` in core/neardup.py was chosen from this table (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesynth.core.embeddings import load_embedder  # noqa: E402
from treesynth.core.neardup import DEFAULT_NEAR_DUP_COSINE, NearDuplicateIndex  # noqa: E402

THRESHOLDS = (0.85, 0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)

# (kind, index of the GSM8K train row, the hand-made variant's question, its answer)
PARAPHRASES: list[tuple[str, int, str, str]] = [
    ("name changed", 0,
     "Sofia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Sofia sell altogether in April and May?",
     "Sofia sold 48/2 = <<48/2=24>>24 clips in May.\nSofia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"),
    ("number changed", 0,
     "Natalia sold clips to 60 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
     "Natalia sold 60/2 = <<60/2=30>>30 clips in May.\nNatalia sold 60+30 = <<60+30=90>>90 clips altogether in April and May.\n#### 90"),
    ("reworded", 0,
     "In April Natalia sold clips to 48 friends. In May she sold only half that many. What is the total number of clips she sold over the two months?",
     "In May she sold 48/2 = <<48/2=24>>24 clips.\nOver both months she sold 48+24 = <<48+24=72>>72 clips.\n#### 72"),
    ("name changed", 1,
     "Priya earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
     "Priya earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"),
    ("number changed", 1,
     "Weng earns $18 an hour for babysitting. Yesterday, she just did 40 minutes of babysitting. How much did she earn?",
     "Weng earns 18/60 = $<<18/60=0.3>>0.3 per minute.\nWorking 40 minutes, she earned 0.3 x 40 = $<<0.3*40=12>>12.\n#### 12"),
    ("reworded", 1,
     "For babysitting, Weng is paid $12 per hour. She babysat for only 50 minutes yesterday. What did she get paid?",
     "Her rate per minute is 12/60 = $<<12/60=0.2>>0.2.\nFor 50 minutes she was paid 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"),
    ("name changed", 2,
     "Carlos is saving money for a new wallet which costs $100. Carlos has only half of the money he needs. His parents decided to give him $15 for that "
     "purpose, and his grandparents twice as much as his parents. How much more money does Carlos need to buy the wallet?",
     "In the beginning, Carlos has only 100 / 2 = $<<100/2=50>>50.\nCarlos's grandparents gave him 15 * 2 = $<<15*2=30>>30.\n"
     "This means, Carlos needs 100 - 50 - 30 - 15 = $<<100-50-30-15=5>>5 more.\n#### 5"),
    ("number changed", 2,
     "Betty is saving money for a new wallet which costs $120. Betty has only half of the money she needs. Her parents decided to give her $15 for that "
     "purpose, and her grandparents twice as much as her parents. How much more money does Betty need to buy the wallet?",
     "In the beginning, Betty has only 120 / 2 = $<<120/2=60>>60.\nBetty's grandparents gave her 15 * 2 = $<<15*2=30>>30.\n"
     "This means, Betty needs 120 - 60 - 30 - 15 = $<<120-60-30-15=15>>15 more.\n#### 15"),
    ("reworded", 2,
     "A new wallet costs $100, and Betty has saved half of that. Her parents give her $15 toward it, and her grandparents give her double what her "
     "parents gave. How much is Betty still short?",
     "Betty has saved 100 / 2 = $<<100/2=50>>50.\nHer grandparents give 15 * 2 = $<<15*2=30>>30.\nShe is still short 100 - 50 - 30 - 15 = $<<100-50-30-15=5>>5.\n#### 5"),
    ("name changed", 4,
     "Omar writes a 3-page letter to 2 different friends twice a week.  How many pages does he write a year?",
     "He writes each friend 3*2=<<3*2=6>>6 pages a week\nSo he writes 6*2=<<6*2=12>>12 pages every week\nThat means he writes 12*52=<<12*52=624>>624 pages a year\n#### 624"),
    ("number changed", 4,
     "James writes a 4-page letter to 3 different friends twice a week.  How many pages does he write a year?",
     "He writes 4*3=<<4*3=12>>12 pages each time\nSo he writes 12*2=<<12*2=24>>24 pages every week\nThat means he writes 24*52=<<24*52=1248>>1248 pages a year\n#### 1248"),
    ("reworded", 4,
     "Twice every week, James sends a letter of 3 pages to each of 2 friends. How many pages does he write in one year?",
     "Each time he writes 3*2=<<3*2=6>>6 pages\nEach week that is 6*2=<<6*2=12>>12 pages\nIn a year he writes 12*52=<<12*52=624>>624 pages\n#### 624"),
    ("name changed", 6,
     "Dmitri is wondering how much pizza he can eat in one day. He buys 2 large pizzas and 2 small pizzas. A large pizza has 16 slices and a small pizza "
     "has 8 slices. If he eats it all, how many pieces does he eat that day?",
     "He eats 32 from the largest pizzas because 2 x 16 = <<2*16=32>>32\nHe eats 16 from the small pizza because 2 x 8 = <<2*8=16>>16\n"
     "He eats 48 pieces because 32 + 16 = <<32+16=48>>48\n#### 48"),
    ("number changed", 6,
     "Albert is wondering how much pizza he can eat in one day. He buys 3 large pizzas and 2 small pizzas. A large pizza has 16 slices and a small pizza "
     "has 8 slices. If he eats it all, how many pieces does he eat that day?",
     "He eats 48 from the largest pizzas because 3 x 16 = <<3*16=48>>48\nHe eats 16 from the small pizza because 2 x 8 = <<2*8=16>>16\n"
     "He eats 64 pieces because 48 + 16 = <<48+16=64>>64\n#### 64"),
    ("reworded", 6,
     "Albert wants to know how much pizza he can finish in a day. He gets 2 large pizzas with 16 slices each and 2 small ones with 8 slices each. "
     "If he finishes everything, how many slices does he eat?",
     "The large pizzas have 2 x 16 = <<2*16=32>>32 slices\nThe small ones have 2 x 8 = <<2*8=16>>16 slices\nAltogether he eats 32 + 16 = <<32+16=48>>48 slices\n#### 48"),
]


def nearest_neighbours(X: np.ndarray, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest other row (exact): (cosine, index)."""
    n = len(X)
    best = np.full(n, -np.inf, dtype=np.float32)
    arg = np.zeros(n, dtype=np.int64)
    for a in range(0, n, block):
        S = X[a : a + block] @ X.T
        r = np.arange(len(S))
        S[r, a + r] = -np.inf
        arg[a : a + block] = S.argmax(axis=1)
        best[a : a + block] = S[r, arg[a : a + block]]
    return best, arg


def rejected_in_order(X: np.ndarray, threshold: float) -> int:
    """Rows the dedup turns away when the data arrives in file order (exact: the whole set fits the
    exact buffer), batches of 5 as one generation call's rows."""
    index = NearDuplicateIndex(X.shape[1], threshold, exact_limit=len(X) + 1)
    return sum(int((~index.admit(X[a : a + 5])[0]).sum()) for a in range(0, len(X), 5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl")
    ap.add_argument("--fields", nargs="+", default=["question", "answer"])
    ap.add_argument("--top", type=int, default=8, help="closest GSM8K pairs to print")
    args = ap.parse_args()

    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [" ".join(str(r[f]) for f in args.fields) for r in rows]
    embed = load_embedder()
    t0 = time.perf_counter()
    X = embed(texts)
    print(f"{len(texts):,} rows of {args.data.name} ({'+'.join(args.fields)}), embedded in {time.perf_counter() - t0:.1f} s")

    nn, arg = nearest_neighbours(X)
    n = len(nn)
    print("\nnearest-neighbour cosine of each row to the rest (exact)")
    print("| p50 | p90 | p99 | p99.9 | max |")
    print("|---:|---:|---:|---:|---:|")
    p = np.percentile(nn, [50, 90, 99, 99.9])
    print(f"| {p[0]:.3f} | {p[1]:.3f} | {p[2]:.3f} | {p[3]:.3f} | {nn.max():.3f} |")

    # the dedup turns a row away when an earlier accepted row is that close: both counts
    print("\nrows with a neighbour at or above a cosine (both rows of a pair), and rows admit() rejects in file order")
    print("| cosine >= | rows with such a neighbour | % | rejected by admit() in order | % |")
    print("|---:|---:|---:|---:|---:|")
    for t in THRESHOLDS:
        any_nb = int((nn >= t).sum())
        in_order = rejected_in_order(X, t) if any_nb else 0
        mark = "  <- default" if abs(t - DEFAULT_NEAR_DUP_COSINE) < 1e-9 else ""
        print(f"| {t:.2f} | {any_nb} | {100 * any_nb / n:.2f} | {in_order} | {100 * in_order / n:.2f} |{mark}")

    print("\npairs of GSM8K rows per cosine band: distinct problems thin out fast below 0.90; what lies above is")
    print("mostly the same story with a number changed or the unknown swapped (read the closest pairs below)")
    hi = [(X[a : a + 2048] @ X.T)[np.triu(np.ones((min(2048, n - a), n), dtype=bool), k=a + 1)] for a in range(0, n, 2048)]
    pair_cos = np.concatenate([h[h >= 0.80] for h in hi])
    edges = np.round(np.arange(0.80, 1.0001, 0.02), 2)
    print("| band | " + " | ".join(f"{lo:.2f}-{hi_:.2f}" for lo, hi_ in zip(edges[:-1], edges[1:], strict=True)) + " |")
    print("|---|" + "---:|" * (len(edges) - 1))
    counts = np.histogram(pair_cos, bins=edges)[0]
    print("| pairs | " + " | ".join(str(int(c)) for c in counts) + " |")

    print(f"\nthe {args.top} closest GSM8K pairs")
    seen: set[tuple[int, int]] = set()
    for i in np.argsort(-nn):
        pair = (int(min(i, arg[i])), int(max(i, arg[i])))
        if pair in seen:
            continue
        seen.add(pair)
        a, b = pair
        print(f"  {nn[i]:.3f}  #{a}: {rows[a]['question'][:90]!r}\n         #{b}: {rows[b]['question'][:90]!r}")
        if len(seen) >= args.top:
            break

    print("\nhand-made paraphrases of GSM8K train rows (cosine to the original; the original's NN cosine for scale)")
    print("| kind | row | cosine | original's NN cosine | flagged at default |")
    print("|---|---:|---:|---:|---|")
    V = embed([" ".join((q, a)) if args.fields == ["question", "answer"] else q for _k, _i, q, a in PARAPHRASES])
    by_kind: dict[str, list[float]] = {}
    for (kind, i, _q, _a), v in zip(PARAPHRASES, V, strict=True):
        c = float(X[i] @ v)
        by_kind.setdefault(kind, []).append(c)
        print(f"| {kind} | {i} | {c:.3f} | {nn[i]:.3f} | {'yes' if c >= DEFAULT_NEAR_DUP_COSINE else 'NO'} |")
    print("\n| kind | min | mean | max |")
    print("|---|---:|---:|---:|")
    for kind, cs in by_kind.items():
        print(f"| {kind} | {min(cs):.3f} | {np.mean(cs):.3f} | {max(cs):.3f} |")
    print(f"\nDEFAULT_NEAR_DUP_COSINE = {DEFAULT_NEAR_DUP_COSINE}")


if __name__ == "__main__":
    main()
