"""Active selection of comparisons: does choosing pairs beat asking about random pairs?

The demo's task (prompts of `positive_replies`, replies sampled from the embedded
SmolLM2-135M-Instruct, the hidden VADER gold judge). A noisy simulated teacher (Bradley–Terry
with the demo annotator's β = 4 and B-Pref's mistake ε = 0.1) labels pairs of replies to the
same training prompt, up to a fixed label budget. The reward model is all-MiniLM-L6-v2 (frozen,
mean-pooled embedding of the reply) + a linear head fitted by L2-regularized Bradley–Terry
(logistic) regression — cheap, so 3 budgets × 3+ seeds × 4 selectors fit in minutes; a
bootstrap ensemble of 5 such heads gives the disagreement / UCB scores. Pool-based loop per run:
20 uniform seed labels, then rounds of 20 chosen by the selector, refitting after each round.
Measured: pairwise accuracy against the gold order on ALL reply pairs of held-out prompts
(different prompts from the training ones), of the ensemble-mean reward, after the budget.

    python benchmarks/active_selection.py                      # writes results/active_selection.{json,md,png}
    python benchmarks/active_selection.py --budgets 40 80 160 --seeds 0 1 2 3 4

Replies and embeddings are cached in runs/active_selection/ (a rerun only refits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from prefloop.teachers.selection import SELECTORS, select  # noqa: E402
from prefloop.teachers.simulated import SimulatedTeacher  # noqa: E402


def sample_replies(cache: Path, num_prompts: int, k: int, max_new_tokens: int, seed: int) -> list[dict]:
    if cache.is_file():
        rows = [json.loads(line) for line in cache.read_text().splitlines() if line.strip()]
        if len(rows) >= num_prompts and all(len(r["responses"]) >= k for r in rows[:num_prompts]):
            return [{"prompt": r["prompt"], "responses": r["responses"][:k]} for r in rows[:num_prompts]]
    from prefloop.generation.hf import HFGenerator
    from prefloop.models.load import load_causal_lm, load_tokenizer
    from prefloop.tasks import task_prompts

    prompts = task_prompts("positive_replies")[:num_prompts]
    gen = HFGenerator(
        load_causal_lm("default").eval(),
        load_tokenizer("default"),
        max_new_tokens=max_new_tokens,
        batch_size=48,
        progress=True,
    )
    groups = gen.generate_grouped(prompts, k, seed=seed)
    rows = [{"prompt": p, "responses": [c.text for c in cs]} for p, cs in zip(prompts, groups)]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def embed(texts: list[str], cache: Path) -> np.ndarray:
    if cache.is_file():
        arr = np.load(cache)
        if arr.shape[0] == len(texts):
            return arr
    import torch
    from transformers import AutoModel, AutoTokenizer

    from prefloop.models.default import minilm_dir

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    model = AutoModel.from_pretrained(str(minilm_dir())).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            batch = tok(
                texts[i : i + 64] or [""], padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            h = model(**batch).last_hidden_state
            m = batch["attention_mask"].unsqueeze(-1).float()
            out.append(((h * m).sum(1) / m.sum(1).clamp(min=1)).numpy())
    arr = np.concatenate(out)
    np.save(cache, arr)
    return arr


def fit_bt(diffs: np.ndarray, l2: float) -> np.ndarray:
    """w minimizing Σ log(1 + exp(−w·d)) + l2/2 |w|² (d = φ(chosen) − φ(rejected))."""
    from scipy.optimize import minimize

    def f(w):
        z = diffs @ w
        loss = np.logaddexp(0, -z).sum() + 0.5 * l2 * w @ w
        grad = -(diffs.T @ (1 / (1 + np.exp(z)))) + l2 * w
        return loss, grad

    return minimize(f, np.zeros(diffs.shape[1]), jac=True, method="L-BFGS-B").x


def ensemble(feats, labelled, chosen_first, rng, members, l2):
    """Bootstrap heads: each fitted on a resample (with replacement) of the labelled pairs."""
    d = np.array(
        [feats[a] - feats[b] if cf else feats[b] - feats[a] for (a, b), cf in zip(labelled, chosen_first)]
    )
    ws = []
    for _ in range(members):
        idx = rng.integers(len(d), size=len(d))
        ws.append(fit_bt(d[idx], l2))
    return np.stack(ws)  # [M, D]


def accuracy(weights, feats, eval_pairs, gold):
    r = feats @ weights.mean(0)
    ok = [(r[a] - r[b]) * (gold[a] - gold[b]) > 0 for a, b in eval_pairs]
    return float(np.mean(ok))


def run_one(selector, budget, seed, feats, gold, cand, eval_pairs, args):
    rng = np.random.default_rng(seed)
    teacher = SimulatedTeacher(lambda p, c: [0.0] * len(c), beta=args.beta, mistake=args.mistake, seed=seed)
    labelled, firsts, used = [], [], set()

    def ask(indices):
        for i in indices:
            a, b = cand[i]
            pref = teacher.compare_returns(gold[a], gold[b])
            used.add(i)
            if pref.which in ("a", "b"):
                labelled.append((a, b))
                firsts.append(pref.which == "a")

    ask(select("uniform", np.zeros((1, len(cand), 2)), min(args.initial, budget), rng))
    weights = ensemble(feats, labelled, firsts, rng, args.members, args.l2)
    while len(used) < budget:
        n = min(args.batch, budget - len(used))
        rewards = np.einsum("md,nkd->mnk", weights, feats[np.array(cand)])  # [M, N, 2]
        ask(select(selector, rewards, n, rng, exclude=sorted(used), ucb_c=args.ucb_c))
        weights = ensemble(feats, labelled, firsts, rng, args.members, args.l2)
    return accuracy(weights, feats, eval_pairs, gold)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=[40, 80, 160])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--selectors", nargs="+", default=list(SELECTORS))
    ap.add_argument("--num-train-prompts", type=int, default=60)
    ap.add_argument("--num-eval-prompts", type=int, default=30)
    ap.add_argument("--k", type=int, default=6, help="replies per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--beta", type=float, default=4.0)
    ap.add_argument("--mistake", type=float, default=0.1)
    ap.add_argument("--initial", type=int, default=20)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--ucb-c", type=float, default=1.0)
    ap.add_argument("--work-dir", default="runs/active_selection")
    ap.add_argument("--out", default=str(HERE / "results" / "active_selection"))
    args = ap.parse_args()

    from prefloop.rewards.gold import SentimentGold

    work = Path(args.work_dir)
    n_prompts = args.num_train_prompts + args.num_eval_prompts
    t0 = time.perf_counter()
    rows = sample_replies(work / "replies.jsonl", n_prompts, args.k, args.max_new_tokens, seed=0)
    t_sample = time.perf_counter() - t0
    texts = [r for row in rows for r in row["responses"]]
    prompts = [row["prompt"] for row in rows for _ in row["responses"]]
    gold = np.array(SentimentGold()(prompts, texts))
    feats = embed(texts, work / "minilm.npy")
    k = args.k
    pairs_of = lambda p: [(p * k + i, p * k + j) for i in range(k) for j in range(i + 1, k)]  # noqa: E731
    cand = [pair for p in range(args.num_train_prompts) for pair in pairs_of(p)]
    eval_pairs = [
        (a, b) for p in range(args.num_train_prompts, n_prompts) for a, b in pairs_of(p) if gold[a] != gold[b]
    ]
    print(
        f"{len(texts)} replies ({t_sample:.0f} s to sample or load), {len(cand)} candidate pairs, {len(eval_pairs)} held-out pairs",
        flush=True,
    )

    results: dict[str, dict[str, list[float]]] = {}
    for selector in args.selectors:
        for budget in args.budgets:
            accs = [run_one(selector, budget, s, feats, gold, cand, eval_pairs, args) for s in args.seeds]
            results.setdefault(selector, {})[str(budget)] = accs
            print(
                f"{selector:>12} budget {budget:4d}: {np.mean(accs):.3f} ± {np.std(accs):.3f}  {[round(a, 3) for a in accs]}",
                flush=True,
            )
    # all labels (the pool's size) as a ceiling
    ceiling = [run_one("uniform", len(cand), s, feats, gold, cand, eval_pairs, args) for s in args.seeds[:1]]
    summary = {
        "results": results,
        "ceiling_all_pairs": ceiling,
        "n_candidates": len(cand),
        "n_eval_pairs": len(eval_pairs),
        "gold_std": float(gold.std()),
        "args": vars(args),
        "seconds": time.perf_counter() - t0,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    lines = [
        "| selector | " + " | ".join(f"budget {b}" for b in args.budgets) + " |",
        "|---|" + "---:|" * len(args.budgets),
    ]
    for selector, by_budget in results.items():
        cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in by_budget.values()]
        lines.append(f"| {selector} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nAll {len(cand)} candidate pairs labelled (uniform, seed {args.seeds[0]}): {ceiling[0]:.3f}"
    )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for selector, by_budget in results.items():
        b = [int(x) for x in by_budget]
        m = [np.mean(v) for v in by_budget.values()]
        s = [np.std(v) for v in by_budget.values()]
        ax.errorbar(b, m, yerr=s, marker="o", capsize=3, label=selector)
    ax.axhline(ceiling[0], color="gray", ls="--", lw=1, label=f"all {len(cand)} pairs")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("labels (noisy simulated teacher)")
    ax.set_ylabel("held-out pairwise accuracy vs gold")
    ax.set_title("Active selection, MiniLM + linear BT head, mean ± std over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    print(f"wrote {out}.json/.md/.png in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
