"""`prefloop diffusion-dpo`: align a tiny image diffusion model with simulated preferences.

Provenance
----------
Wallace et al. 2023, "Diffusion Model Alignment Using Direct Preference Optimization"; the loss
is `prefloop.losses.diffusion_dpo_loss` (formula, constants and shapes there). The paper
fine-tunes Stable Diffusion on Pick-a-Pic's human pairs; here everything is small enough for a
CPU and the "human" is simulated over a hidden gold judge, so the improvement can be measured:

1. data: scikit-learn's 8×8 digits, a seeded split (train / held-out, `eval_fraction`);
2. gold: a classifier trained on the train split, g(x) = p(digit = target | x)
   (`prefloop.image.digits`); a second classifier, trained on the held-out split with another
   seed and never seen by the annotator, checks that a gain is not the first one being fooled;
3. reference: a DDPM (`prefloop.image.ddpm`) pretrained on the train split (or `--reference DIR`
   from an earlier run);
4. pairs: 2·num_pairs reference samples, paired in order; a B-Pref stochastic teacher
   (`prefloop.teachers.simulated.SimulatedTeacher`, rationality `annotator_beta` in gold units,
   flip rate `annotator_mistake`) says which of each pair it prefers;
5. policy: a copy of the reference trained with the Diffusion-DPO loss on the labelled pairs —
   each step draws `batch_size` pairs, one t ~ U{0..T−1} and one ε per pair shared by its two
   images, the frozen reference's errors computed live;
6. evaluation: `eval_samples` fresh images from reference and policy with the same sampler seed
   (image i of both starts from the same noise): mean gold score ± s.e., the share classified
   as the target digit (by the gold and by the check classifier), and the win rate of policy
   over reference image by image (gold-score ties count ½) with a bootstrap 95 % interval; how
   far the policy moved: the RMS pixel difference between image i before and after.

Outputs: OUTPUT/reference/{model.pt, model.json, metrics.jsonl} (pretraining), OUTPUT/policy/
{model.pt, model.json}, OUTPUT/metrics.jsonl (one line per logged DPO step: loss and the loss's
metrics), OUTPUT/samples.png (64 images before | after, same seeds), OUTPUT/training.png,
OUTPUT/report.md, OUTPUT/summary.json, OUTPUT/config.yaml.

Deviations / choices
--------------------
- Unconditional generation (no prompts): the preference is one fixed target, like one prompt.
- Pairs with a tie or a skip from the teacher are dropped (the default teacher gives neither).
- The loss's ω(λ_t) = 1 and the released code's ½ are folded into β (see the loss module).
- Seeds: split, classifier and model init use `seed`; pretraining seed+1, pair sampling seed+2,
  the annotator seed+3, DPO's batches, t and ε seed+4, the check classifier seed+5, the fixed
  (t, ε) draws of the final loss over all labelled pairs seed+6; evaluation samples use `eval_seed` (so runs with different seeds are evaluated on the same noise).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from prefloop.image.ddpm import (
    NoisePredictor,
    NoiseSchedule,
    cosine_schedule,
    denoising_errors,
    pretrain,
    sample,
)
from prefloop.image.digits import NUM_PIXELS, DigitGold, accuracy, load_digit_images, train_classifier
from prefloop.losses.diffusion import diffusion_dpo_loss
from prefloop.train.logs import MetricsLogger, write_json


@dataclass
class DiffusionDPOConfig:
    """Diffusion-DPO on 8×8 digits: pretrain a tiny DDPM, label its samples with a simulated annotator, align it."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    output_dir: str = "outputs/diffusion-dpo"
    """Where reference/, policy/, metrics.jsonl, samples.png, report.md and summary.json are written."""
    seed: int = 0
    """Seed of the split, the classifiers, the models, the pairs, the annotator and the DPO batches."""
    target_digit: int = 0
    """The gold preference: images the classifier reads as this digit (0-9) are better."""
    eval_fraction: float = 0.2
    """Share of the 1,797 digits held out from the DDPM and the gold classifier (the check classifier trains on it)."""
    reference: str | None = None
    """A reference/ directory of an earlier run to start from; None: pretrain one here."""
    num_timesteps: int = 100
    """Diffusion steps T (cosine schedule); also the T of the loss's β·T."""
    hidden: int = 256
    """Width of the noise predictor's MLP."""
    depth: int = 3
    """Residual blocks of the noise predictor."""
    pretrain_steps: int = 4000
    """Optimizer steps of reference pretraining (simple ε-prediction loss)."""
    pretrain_batch_size: int = 128
    """Images per pretraining step."""
    pretrain_learning_rate: float = 1e-3
    """Peak AdamW learning rate of pretraining (cosine decay to 0)."""
    num_pairs: int = 2000
    """Preference pairs to label (2·num_pairs reference samples)."""
    annotator_beta: float = 20.0
    """Rationality β of the simulated annotator, P(a ≻ b) = σ(β (g(a) − g(b))), gold in [0, 1]; inf: noiseless."""
    annotator_mistake: float = 0.0
    """Probability that the annotator flips its verdict (B-Pref's 'mistake' teacher uses 0.1)."""
    steps: int = 1500
    """Diffusion-DPO optimizer steps."""
    batch_size: int = 64
    """Preference pairs per Diffusion-DPO step."""
    learning_rate: float = 1e-4
    """Constant AdamW learning rate of Diffusion-DPO."""
    beta: float = 1.0
    """β of the loss (the logit is −β·T·Δ); larger keeps the policy closer to the reference."""
    eval_samples: int = 1000
    """Fresh images sampled from reference and policy for the before/after numbers."""
    eval_seed: int = 1234
    """Sampler seed of the evaluation images (the same for reference and policy)."""
    logging_steps: int = 50
    """Write a metrics.jsonl line (mean over the last N steps) and a progress line every N DPO steps."""


PAIR_DRAWS = 16  # (t, ε) draws per pair for the final loss over the labelled pairs


class DiffusionDPOError(ValueError):
    """A run that cannot start as configured (one-line message)."""


def check_config(cfg: DiffusionDPOConfig) -> None:
    """Reject settings that cannot work before anything is trained."""
    problems = []
    if not cfg.beta > 0:
        problems.append(f"beta must be > 0, got {cfg.beta}")
    if cfg.steps < 1 or cfg.batch_size < 1:
        problems.append(f"steps and batch_size must be >= 1, got {cfg.steps} and {cfg.batch_size}")
    if cfg.num_pairs < cfg.batch_size:
        problems.append(
            f"num_pairs ({cfg.num_pairs}) is smaller than one batch (batch_size {cfg.batch_size}): "
            "label more pairs or lower --batch-size"
        )
    if not 0 <= cfg.target_digit <= 9:
        problems.append(f"target_digit must be 0-9, got {cfg.target_digit}")
    if not 0 < cfg.eval_fraction < 1:
        problems.append(f"eval_fraction must be in (0, 1), got {cfg.eval_fraction}")
    if cfg.reference is None and cfg.pretrain_steps < 1:
        problems.append("pretrain_steps must be >= 1 (or pass --reference DIR)")
    if cfg.num_timesteps < 1 or cfg.hidden < 1 or cfg.depth < 0:
        problems.append("num_timesteps and hidden must be >= 1, depth >= 0")
    if not cfg.annotator_beta >= 0:
        problems.append(f"annotator_beta must be >= 0 (inf: noiseless), got {cfg.annotator_beta}")
    if not 0 <= cfg.annotator_mistake <= 1:
        problems.append(f"annotator_mistake must be in [0, 1], got {cfg.annotator_mistake}")
    if cfg.eval_samples < 2 or cfg.logging_steps < 1 or cfg.learning_rate <= 0:
        problems.append("eval_samples must be >= 2, logging_steps >= 1 and learning_rate > 0")
    if problems:
        raise DiffusionDPOError("; ".join(problems))


def architecture(cfg: DiffusionDPOConfig) -> dict[str, int]:
    return {"num_timesteps": cfg.num_timesteps, "hidden": cfg.hidden, "depth": cfg.depth}


def save_model(model: NoisePredictor, arch: dict[str, int], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / "model.pt")
    write_json(directory / "model.json", arch)


def load_reference(directory: Path, arch: dict[str, int]) -> NoisePredictor:
    """The noise predictor saved in `directory` (model.pt + model.json); its architecture must be `arch`."""
    meta = directory / "model.json"
    if not meta.is_file() or not (directory / "model.pt").is_file():
        raise DiffusionDPOError(f"{directory}: not a reference directory (model.pt and model.json expected)")
    saved = json.loads(meta.read_text())
    if saved != arch:
        raise DiffusionDPOError(
            f"{directory}: the reference was trained with {saved}, this run asks for {arch}; pass the same values"
        )
    model = NoisePredictor(NUM_PIXELS, arch["hidden"], arch["depth"])
    model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
    return model.eval()


def label_pairs(
    images: torch.Tensor, scores: torch.Tensor, cfg: DiffusionDPOConfig
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Pair images (0, 1), (2, 3), ...; the simulated annotator picks. (chosen, rejected, stats)."""
    from prefloop.teachers.simulated import SimulatedTeacher

    def no_text_gold(prompts, completions):  # the teacher sees gold scores, passed in as returns
        raise TypeError("image pairs are judged through compare_returns")

    teacher = SimulatedTeacher(
        no_text_gold, beta=cfg.annotator_beta, mistake=cfg.annotator_mistake, seed=cfg.seed + 3
    )
    chosen, rejected, agree, decided = [], [], 0.0, 0
    for i in range(0, 2 * cfg.num_pairs, 2):
        g_a, g_b = float(scores[i]), float(scores[i + 1])
        verdict = teacher.compare_returns(g_a, g_b).which
        if verdict not in ("a", "b"):
            continue
        w, l_ = (i, i + 1) if verdict == "a" else (i + 1, i)
        chosen.append(w)
        rejected.append(l_)
        decided += 1
        agree += 1.0 if scores[w] > scores[l_] else 0.5 if scores[w] == scores[l_] else 0.0
    stats = {
        "pairs_labelled": float(decided),
        "annotator_agreement_with_gold": agree / decided if decided else float("nan"),
    }
    return images[chosen], images[rejected], stats


def dpo_step_batch(
    gen: torch.Generator, num_pairs: int, batch_size: int, schedule: NoiseSchedule
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair indices [B], timesteps [B] and noise [B, P] for one step (t and ε shared within a pair)."""
    idx = torch.randint(0, num_pairs, (batch_size,), generator=gen)
    t = torch.randint(0, schedule.num_timesteps, (batch_size,), generator=gen)
    noise = torch.randn(batch_size, NUM_PIXELS, generator=gen)
    return idx, t, noise


@torch.no_grad()
def pairs_loss(
    policy: NoisePredictor,
    reference: NoisePredictor,
    schedule: NoiseSchedule,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    cfg: DiffusionDPOConfig,
    draws: int,
) -> tuple[float, dict[str, float]]:
    """The loss over every labelled pair, each error averaged over `draws` fixed (t, ε) draws (seed+6).

    draws = 1 is the training objective at one fixed draw per pair. More draws estimate the loss
    with the expectation over (t, ε) inside the sigmoid, which the paper bounds from above (by
    Jensen's inequality) to get its per-draw training loss; the per-draw loss is inflated by the
    noise of a single draw. Both are exactly ln 2 when the policy is the reference.
    """
    gen = torch.Generator().manual_seed(cfg.seed + 6)
    errors = torch.zeros(4, chosen.shape[0])
    for _ in range(draws):
        t = torch.randint(0, schedule.num_timesteps, (chosen.shape[0],), generator=gen)
        noise = torch.randn(chosen.shape[0], NUM_PIXELS, generator=gen)
        for k, (model, images) in enumerate(
            ((policy, chosen), (policy, rejected), (reference, chosen), (reference, rejected))
        ):
            errors[k] += denoising_errors(model, schedule, images, t, noise) / draws
    loss, metrics = diffusion_dpo_loss(
        errors[0], errors[1], errors[2], errors[3], cfg.beta, cfg.num_timesteps
    )
    return loss.item(), metrics


def evaluate(gold: DigitGold, check: DigitGold, images: torch.Tensor) -> dict[str, Any]:
    from prefloop.eval.metrics import mean_and_stderr

    scores = gold(images).tolist()
    mean, stderr = mean_and_stderr(scores)
    return {
        "gold_mean": mean,
        "gold_stderr": stderr,
        "target_rate": gold.is_target(images).float().mean().item(),
        "check_target_rate": check.is_target(images).float().mean().item(),
        "scores": scores,
    }


def train(cfg: DiffusionDPOConfig) -> Path:
    """The whole run (see the module docstring); returns OUTPUT."""
    from prefloop.config import save_yaml
    from prefloop.eval.stats import outcomes_from_scores, win_rate
    from prefloop.train.schedule import split_eval

    check_config(cfg)
    arch = architecture(cfg)
    loaded = load_reference(Path(cfg.reference), arch) if cfg.reference else None  # fail before any work
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    timings: dict[str, float] = {}

    def phase(name: str, what: str) -> float:
        print(f"[{name}] {what}", flush=True)
        return time.perf_counter()

    # 1-2. data and gold
    t0 = phase("gold", f"classifier p(digit = {cfg.target_digit} | image) on scikit-learn's 8x8 digits")
    images, labels = load_digit_images()
    train_idx, held_idx = split_eval(len(images), cfg.eval_fraction, cfg.seed)
    train_images = images[train_idx]
    classifier = train_classifier(train_images, labels[train_idx], seed=cfg.seed)
    check_classifier = train_classifier(images[held_idx], labels[held_idx], seed=cfg.seed + 5)
    gold = DigitGold(classifier, cfg.target_digit)
    check = DigitGold(check_classifier, cfg.target_digit)
    classifier_accuracy = accuracy(classifier, images[held_idx], labels[held_idx])
    check_accuracy = accuracy(check_classifier, train_images, labels[train_idx])
    print(f"    gold classifier held-out accuracy {classifier_accuracy:.3f}", flush=True)
    timings["gold_s"] = time.perf_counter() - t0

    # 3. reference
    schedule = cosine_schedule(cfg.num_timesteps)
    if loaded is not None:
        t0 = phase("reference", f"loaded from {cfg.reference}")
        reference = loaded
        pretrain_loss = float("nan")
    else:
        t0 = phase("reference", f"pretraining a DDPM ({cfg.pretrain_steps} steps, T = {cfg.num_timesteps})")
        reference = NoisePredictor(NUM_PIXELS, cfg.hidden, cfg.depth)
        (out / "reference").mkdir(exist_ok=True)
        ref_logger = MetricsLogger(out / "reference", tensorboard="no")

        def log_pretrain(step: int, metrics: dict[str, float]) -> None:
            ref_logger.log(step, metrics)
            print(f"    pretrain step {step}/{cfg.pretrain_steps}: loss {metrics['loss']:.4f}", flush=True)

        pretrain_loss = pretrain(
            reference,
            schedule,
            train_images,
            steps=cfg.pretrain_steps,
            batch_size=cfg.pretrain_batch_size,
            learning_rate=cfg.pretrain_learning_rate,
            seed=cfg.seed + 1,
            log=log_pretrain,
            log_every=max(1, cfg.pretrain_steps // 10),
        )
        ref_logger.close()
        save_model(reference, arch, out / "reference")
    reference.requires_grad_(False)
    timings["reference_s"] = time.perf_counter() - t0

    # 4. preference pairs from the reference, labelled by the simulated annotator
    t0 = phase("pairs", f"sampling {2 * cfg.num_pairs} reference images, simulated annotator labels pairs")
    pool = sample(reference, schedule, 2 * cfg.num_pairs, NUM_PIXELS, seed=cfg.seed + 2)
    chosen, rejected, label_stats = label_pairs(pool, gold(pool), cfg)
    num_labelled = chosen.shape[0]
    print(
        f"    {num_labelled} pairs labelled; annotator agreement with gold "
        f"{label_stats['annotator_agreement_with_gold']:.3f}",
        flush=True,
    )
    if num_labelled < cfg.batch_size:
        raise DiffusionDPOError(
            f"only {num_labelled} pairs were labelled (ties and skips dropped), fewer than one batch "
            f"(batch_size {cfg.batch_size}): label more pairs or lower --batch-size"
        )
    timings["pairs_s"] = time.perf_counter() - t0

    # 5. Diffusion-DPO
    t0 = phase("diffusion-dpo", f"{cfg.steps} steps, batch {cfg.batch_size} pairs, beta {cfg.beta}")
    policy = copy.deepcopy(reference).requires_grad_(True).train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 4)
    logger = MetricsLogger(out, tensorboard="no")
    window: list[dict[str, float]] = []
    history: list[dict[str, float]] = []
    for step in range(1, cfg.steps + 1):
        step_started = time.perf_counter()
        idx, t, noise = dpo_step_batch(gen, num_labelled, cfg.batch_size, schedule)
        with torch.no_grad():
            ref_chosen = denoising_errors(reference, schedule, chosen[idx], t, noise)
            ref_rejected = denoising_errors(reference, schedule, rejected[idx], t, noise)
        policy_chosen = denoising_errors(policy, schedule, chosen[idx], t, noise)
        policy_rejected = denoising_errors(policy, schedule, rejected[idx], t, noise)
        loss, metrics = diffusion_dpo_loss(
            policy_chosen, policy_rejected, ref_chosen, ref_rejected, cfg.beta, cfg.num_timesteps
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        window.append({"loss": loss.item(), **metrics, "step_time_s": time.perf_counter() - step_started})
        if step % cfg.logging_steps == 0 or step == cfg.steps:
            row = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
            row["learning_rate"] = cfg.learning_rate
            logger.log(step, row)
            history.append({"step": step, **row})
            print(
                f"    step {step}/{cfg.steps}: loss {row['loss']:.4f}, "
                f"implicit accuracy {row['rewards/accuracy']:.3f}, margin {row['rewards/margin']:.3f}",
                flush=True,
            )
            window = []
    logger.close()
    policy.eval().requires_grad_(False)
    save_model(policy, arch, out / "policy")
    pair_loss, pair_metrics = pairs_loss(policy, reference, schedule, chosen, rejected, cfg, draws=1)
    avg_loss, avg_metrics = pairs_loss(policy, reference, schedule, chosen, rejected, cfg, draws=PAIR_DRAWS)
    print(
        f"    all {num_labelled} labelled pairs (ln 2 = {math.log(2):.4f} before training): loss {pair_loss:.4f} "
        f"at one (t, ε) each, {avg_loss:.4f} with errors averaged over {PAIR_DRAWS} draws; "
        f"implicit accuracy {avg_metrics['rewards/accuracy']:.3f}",
        flush=True,
    )
    timings["dpo_s"] = time.perf_counter() - t0

    # 6. before / after on fresh samples with the same sampler seed
    t0 = phase("eval", f"{cfg.eval_samples} fresh images from reference and policy (seed {cfg.eval_seed})")
    before_images = sample(reference, schedule, cfg.eval_samples, NUM_PIXELS, seed=cfg.eval_seed)
    after_images = sample(policy, schedule, cfg.eval_samples, NUM_PIXELS, seed=cfg.eval_seed)
    before = evaluate(gold, check, before_images)
    after = evaluate(gold, check, after_images)
    wr = win_rate(outcomes_from_scores(after.pop("scores"), before.pop("scores")), seed=cfg.seed)
    # How far the policy moved: RMS pixel difference of image i before vs after (same noise), [0, 2].
    pixel_change = (after_images - before_images).pow(2).mean(dim=1).sqrt().mean().item()
    timings["eval_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started

    summary = {
        "before": before,
        "after": after,
        "win_rate": wr.as_dict(),
        "rms_pixel_change": pixel_change,
        "gold": gold.name,
        "gold_classifier_heldout_accuracy": classifier_accuracy,
        "check_classifier_accuracy_on_train_split": check_accuracy,
        "pretrain_final_loss": pretrain_loss,
        **label_stats,
        "pairs_loss_one_draw_after": pair_loss,
        "pairs_accuracy_one_draw_after": pair_metrics["rewards/accuracy"],
        "pairs_loss_after": avg_loss,
        "pairs_accuracy_after": avg_metrics["rewards/accuracy"],
        "pairs_draws": PAIR_DRAWS,
        "dpo_first_logged": history[0],
        "dpo_last_logged": history[-1],
        "timings": timings,
        "config": asdict(cfg),
    }
    write_json(out / "summary.json", _finite(summary))
    samples_figure(out / "samples.png", before_images[:64], after_images[:64], before, after, cfg)
    training_figure(out / "training.png", history)
    (out / "report.md").write_text(report_markdown(summary, cfg))
    print(
        f"gold {gold.name}: before {before['gold_mean']:.3f} ± {before['gold_stderr']:.3f}, "
        f"after {after['gold_mean']:.3f} ± {after['gold_stderr']:.3f}; target rate "
        f"{before['target_rate']:.3f} -> {after['target_rate']:.3f}; win rate {wr.win_rate:.3f} "
        f"[{wr.ci_low:.3f}, {wr.ci_high:.3f}]",
        flush=True,
    )
    return out


def _finite(value: Any) -> Any:
    """NaN/inf as strings so summary.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def samples_figure(
    path: Path,
    before: torch.Tensor,
    after: torch.Tensor,
    before_stats: dict[str, Any],
    after_stats: dict[str, Any],
    cfg: DiffusionDPOConfig,
) -> None:
    """Two 8×8 grids of images (reference | policy, image i from the same noise in both)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def grid(images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        side = math.ceil(math.sqrt(n))
        canvas = torch.full((side * 9 - 1, side * 9 - 1), float("nan"))
        for k in range(n):
            r, c = divmod(k, side)
            canvas[r * 9 : r * 9 + 8, c * 9 : c * 9 + 8] = images[k].reshape(8, 8)
        return canvas

    fig, axes = plt.subplots(1, 2, figsize=(10, 5.6), layout="constrained")
    for ax, images, stats, title in (
        (axes[0], before, before_stats, "reference (before)"),
        (axes[1], after, after_stats, "Diffusion-DPO policy (after)"),
    ):
        cmap = plt.get_cmap("gray_r").with_extremes(bad="white")
        ax.imshow(grid(images).numpy(), cmap=cmap, vmin=-1, vmax=1)
        ax.set_title(
            f"{title}\nmean p(digit = {cfg.target_digit}) {stats['gold_mean']:.3f}, "
            f"read as {cfg.target_digit}: {stats['target_rate']:.1%}",
            fontsize=10,
        )
        ax.axis("off")
    fig.supxlabel(
        f"sampler seed {cfg.eval_seed}: image i starts from the same noise on both sides", fontsize=9
    )
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


def training_figure(path: Path, history: list[dict[str, float]]) -> None:
    """The DPO loss and implicit accuracy against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [h["loss"] for h in history], label="loss")
    ax.axhline(math.log(2), color="grey", lw=0.8, ls="--", label="ln 2 (policy = reference)")
    ax.set_xlabel("Diffusion-DPO step")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(steps, [h["rewards/accuracy"] for h in history], color="tab:orange", label="implicit accuracy")
    ax2.set_ylabel("implicit accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report_markdown(summary: dict[str, Any], cfg: DiffusionDPOConfig) -> str:
    b, a, wr = summary["before"], summary["after"], summary["win_rate"]
    d = cfg.target_digit
    lines = [
        "# Diffusion-DPO on 8×8 digits",
        "",
        f"Gold: {summary['gold']} (classifier held-out accuracy "
        f"{summary['gold_classifier_heldout_accuracy']:.3f}); simulated annotator: β = {cfg.annotator_beta:g}, "
        f"mistake {cfg.annotator_mistake:g}, agreement with gold {summary['annotator_agreement_with_gold']:.3f} "
        f"on {int(summary['pairs_labelled'])} pairs. Diffusion-DPO: β = {cfg.beta:g}, T = {cfg.num_timesteps}, "
        f"{cfg.steps} steps × {cfg.batch_size} pairs, seed {cfg.seed}.",
        "",
        f"{cfg.eval_samples} fresh samples each, sampler seed {cfg.eval_seed} (same noise for both models):",
        "",
        "| | reference (before) | policy (after) |",
        "|---|---:|---:|",
        f"| mean gold score p(digit = {d}) ± s.e. | {b['gold_mean']:.3f} ± {b['gold_stderr']:.3f} | "
        f"**{a['gold_mean']:.3f} ± {a['gold_stderr']:.3f}** |",
        f"| share read as {d} by the gold classifier | {b['target_rate']:.3f} | **{a['target_rate']:.3f}** |",
        f"| share read as {d} by the check classifier (never seen by the annotator) | "
        f"{b['check_target_rate']:.3f} | **{a['check_target_rate']:.3f}** |",
        f"| gold win rate, policy vs reference image by image [95 % CI] | | "
        f"**{wr['win_rate']:.3f}** [{wr['ci_low']:.3f}, {wr['ci_high']:.3f}] |",
        f"| RMS pixel change of image i, before → after (pixels in [−1, 1]) | | {summary['rms_pixel_change']:.3f} |",
        "",
        f"Diffusion-DPO loss over all labelled pairs, ln 2 = 0.6931 before training (policy = reference): "
        f"{summary['pairs_loss_after']:.4f} after, with each pair's errors averaged over "
        f"{summary['pairs_draws']} (t, ε) draws (implicit accuracy {summary['pairs_accuracy_after']:.3f}); "
        f"{summary['pairs_loss_one_draw_after']:.4f} at one draw per pair, the training objective "
        f"(accuracy {summary['pairs_accuracy_one_draw_after']:.3f}). Training loss, mean of the first / last "
        f"logged window: {summary['dpo_first_logged']['loss']:.4f} / {summary['dpo_last_logged']['loss']:.4f}.",
        "",
        "![samples before and after](samples.png)",
        "",
        "![training curve](training.png)",
        "",
        "Time: " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in summary["timings"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str], command: str = "diffusion-dpo") -> None:
    from prefloop.cli import fail
    from prefloop.config import ConfigError, parse_args

    cfg = parse_args(
        DiffusionDPOConfig, argv, prog=f"prefloop {command}", description=DiffusionDPOConfig.__doc__
    )
    try:
        out = train(cfg)
    except (DiffusionDPOError, ConfigError, ImportError) as exc:
        fail(str(exc))
    print(f"done: {out}")
