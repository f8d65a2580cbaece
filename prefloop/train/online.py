"""The online RL loop: PPO, A2C, RLOO, GRPO and REINFORCE++ on one rollout.

Provenance
----------
Ziegler et al. 2019 and Ouyang et al. 2022 (InstructGPT; PPO against a reward model with a
per-token KL penalty to the SFT model, PPO-ptx); Mnih et al. 2016 (A2C); Ahmadian et al. 2024
(RLOO); Shao et al. 2024 (GRPO), Liu et al. 2025 (Dr. GRPO), Yu et al. 2025 (DAPO); Hu 2025
(REINFORCE++). The formulas are in `prefloop.losses.rl`; docs/algorithms/ has one page each.

One step (a "rollout step"; `--max-steps` counts these):

    1. prompts     `prompts_per_step` prompts, in a seeded order that depends only on the step
    2. generate    K = `num_generations` completions each, through the `Generator` protocol
                   (HF generate with a KV cache); the generator's RNG is checkpointed
    3. reward      one score per completion from `--reward` (checked: a bad score stops the
                   run with one line), then penalties / running normalisation / clipping
    4. log-probs   teacher-forced on the *sampled token ids* (never re-tokenized text):
                   old log-probs by the training model (the ratio's denominator), the frozen
                   reference's, and old values; the generator's log-probs are only compared
                   (metrics logprobs/mismatch_mean / _max / _bias)
    5. advantages  the algorithm's function (the registry `ALGORITHMS`)
    6. update      `ppo_epochs` passes over the rollout in shuffled minibatches of
                   batch_size x grad_accum sequences, one optimizer step each; the policy loss
                   is the clipped surrogate (+ value loss, − entropy bonus, + KL loss term,
                   + PPO-ptx); early stop when a minibatch's approximate KL passes `early_stop_kl`
    7. KL control  β ← controller.update(measured KL, rollout size); log; checkpoint

Shapes: N = P·K sequences per rollout; per-token tensors [N, T] over response positions
(T = the longest response), ``mask`` 1 on real response tokens; scores [N].

Several processes (`accelerate launch` with the DDP config; `prefloop.dist`): rank r of W takes
the r-th contiguous share of the step's P prompts, so a prompt's K completions stay on one rank.
It samples them (with `prompt_seeds`, the samples of a prompt are those one process would draw)
and scores them; then every rank holds the whole rollout's bookkeeping (completions, scores,
and after step 4 the per-token log-probs and values, each computed by the rank that owns the
sequence), so shaping, group baselines, whitening and the KL controller see exactly what one
process sees. In step 6 every rank walks the same minibatches and runs the micro-batches of the
sequences it owns, weighted by the whole minibatch's token (or sequence) count; the gradients
are summed over ranks before each optimizer step. PPO-ptx's batch runs on rank 0 only.

Choices where papers differ (docs/algorithms/*.md state the defaults)
--------------------------------------------------------------------
- Old log-probs are recomputed by the training model in the same micro-batches (same
  padding) as the first epoch's first pass, so the ratio on the first minibatch of the first
  epoch is exactly 1 (logged: ratio/first_minibatch_max_dev) and drift between sampler and
  trainer (bf16 sampling, vLLM, temperature) never enters the ratio; it is logged instead.
- Dropout is switched off in the policy and the value model (as in most RLHF PPO code): with
  dropout the ratio is not 1 even before any update.
- The value model and the policy share one AdamW (one learning rate); `vf_coef` weighs the
  value loss. The learning-rate schedule advances once per rollout step.
- A2C is the same loop with one epoch and one minibatch (the clipped surrogate at ratio 1 is
  the policy gradient −A·∇log π) and an unclipped value loss.
- The measured KL (`kl`) is the mean over responses of Σ_t (log π_old − log π_ref)(y_t): the
  k1 estimate of KL(π ‖ π_ref) per response, on the sampled token ids.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from prefloop.train.config import TrainConfig, TrainError, run_cli

# --------------------------------------------------------------------------- configs


@dataclass
class OnlineConfig(TrainConfig):
    """Online RL against a reward: sample, score, update (fields shared by ppo/a2c/rloo/grpo/reinforce)."""

    output_dir: str = "outputs/online"
    """Where final/, checkpoints/, metrics.jsonl and config.yaml are written."""
    data: str = ""
    """Prompts: any of our formats with a 'prompt' field (TRL's prompt-only format too); other fields go to meta."""
    reward: str = ""
    """The reward: rm:DIR, a reward-model directory, gold:NAME, MODULE:FUNCTION, W*SPEC,... or FILE.yaml."""
    reward_batch_size: int = 16
    """Completions per reward-model forward pass."""
    generator: Literal["hf", "vllm"] = "hf"
    """Sampling backend: 'hf' (transformers generate on the training model) or 'vllm' (an in-process vLLM engine that gets the weights after every update; needs vllm installed, docs/scaling.md)."""
    ray: bool = False
    """Generate and score in Ray actors (rollout and reward workers) instead of in this process; see docs/scaling.md."""
    ray_address: str | None = None
    """Ray cluster to join ('auto', HOST:PORT); default: start a local one."""
    ray_rollout_workers: int = 1
    """Rollout (generation) actors with --ray; prompts are split across them."""
    ray_reward_workers: int = 1
    """Reward actors with --ray; completions are split across them."""
    sync_timeout_s: float = 120.0
    """Deadline of each weight sync to the rollout actors (--ray) or the in-process vLLM engine (--generator vllm); a WeightSyncError names the actor or rank that missed it."""
    tis: Literal["auto", "on", "off"] = "auto"
    """Truncated importance sampling: weight each token's advantage by min(π_old/q_generator, tis_cap); 'auto': on with --ray or --generator vllm (the generator is not the trainer)."""
    tis_cap: float = 2.0
    """Cap of the truncated importance ratio."""
    tis_seq_threshold: float | None = None
    """Drop (weight 0) a whole sequence whose geometric-mean ratio π_old/q leaves [1/C, C]; None: no sequence mask."""
    prompt_seeds: Literal["auto", "on", "off"] = "auto"
    """Sample each prompt's K completions with a seed of its own (from seed, step and the prompt's place in the step), so the samples do not depend on which prompts share a generate batch or a process; 'auto': on with several processes (required there), off alone (one seeded stream, batched across prompts)."""
    max_steps: int = -1
    """Rollout steps (each: generate, score, update); -1 means `epochs` passes over the prompts."""
    prompts_per_step: int = 8
    """Prompts per rollout step."""
    num_generations: int = 1
    """Completions sampled per prompt (K); group methods need K >= 2."""
    batch_size: int = 8
    """Sequences per forward/backward pass; an optimizer step takes batch_size x grad_accum sequences."""
    learning_rate: float = 1e-6
    """Peak learning rate of AdamW (policy and value model)."""
    lr_scheduler: Literal["linear", "cosine", "constant"] = "constant"
    """Learning-rate decay after warmup (per rollout step)."""
    max_new_tokens: int = 48
    """Maximum sampled tokens per completion (generation also stops at the end-of-turn token)."""
    temperature: float = 1.0
    """Sampling temperature (1: the policy itself, so log-probs and KL are the policy's)."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1 = off)."""
    gen_batch_size: int = 64
    """Sequences per generate() call."""
    ppo_epochs: int = 1
    """Passes over each rollout (PPO's K epochs)."""
    clip_eps: float = 0.2
    """PPO clip range ε of the ratio."""
    dual_clip: float | None = None
    """Dual-clip constant c > 1 for negative advantages (None: off)."""
    early_stop_kl: float | None = None
    """Stop a rollout's epochs when a minibatch's approximate KL(π_old ‖ π) exceeds this (None: never)."""
    entropy_coef: float = 0.0
    """Entropy bonus coefficient (loss −= coef × token-mean entropy)."""
    kl_coef: float = 0.05
    """β of the KL penalty to the frozen reference (initial β when adaptive_kl)."""
    kl_estimator: Literal["k1", "k3"] = "k1"
    """Per-token KL estimator in the penalty: k1 = log π − log π_ref, k3 = (ρ − 1) − log ρ."""
    kl_in: Literal["reward", "loss"] = "reward"
    """Where the KL penalty goes: into the per-token reward (PPO) or a loss term (GRPO)."""
    adaptive_kl: bool = False
    """Adapt β toward kl_target (Ziegler et al. 2019) instead of keeping it fixed."""
    kl_target: float = 6.0
    """Target KL per response (nats) of the adaptive controller."""
    kl_horizon: int = 10000
    """Horizon (in sampled responses) of the adaptive controller."""
    gamma: float = 1.0
    """Discount γ of returns and GAE."""
    lam: float = 0.95
    """GAE λ."""
    whiten_advantages: bool = True
    """Normalise advantages over the rollout's real tokens (mean 0, std 1)."""
    whiten_rewards: bool = False
    """Rescale the per-token rewards by their std over the rollout before GAE."""
    vf_coef: float = 0.1
    """Weight of the value loss in the total loss."""
    value_clip_eps: float | None = 0.2
    """Clip range of the value loss (None: plain squared error)."""
    value_model: str = "auto"
    """Value model: 'auto' (the reward model when it shares the policy's tokenizer, else the policy), 'policy', or a path."""
    value_head: Literal["separate", "shared"] = "separate"
    """'separate': its own model with a scalar head; 'shared': a scalar head on the policy's trunk."""
    loss_aggregation: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"] = "token-mean"
    """How per-token losses become one number (prefloop.losses.rl): every token equal, or every sequence."""
    group_baseline: Literal["grpo", "dr_grpo", "rloo"] = "rloo"
    """Group advantage of rloo/grpo: (r − mean)/std, r − mean, or leave-one-out."""
    ptx_coef: float = 0.0
    """PPO-ptx γ: weight of the language-modeling log-likelihood of ptx_data (0: off)."""
    ptx_data: str | None = None
    """Pretraining/demonstration texts for PPO-ptx (our demonstration formats)."""
    ptx_batch_size: int = 4
    """ptx texts per optimizer step."""
    missing_eos_penalty: float = 0.0
    """Subtracted from the reward of a completion cut at max_new_tokens (no end-of-turn token)."""
    length_penalty: float = 0.0
    """Subtracted per completion token beyond length_target."""
    length_target: int = 0
    """Completions up to this many tokens get no length penalty."""
    reward_normalize: bool = False
    """Running normalisation of rewards ((r − running mean) / running std)."""
    reward_clip: float | None = None
    """Clip (normalised) rewards to [−reward_clip, reward_clip] (None: off)."""
    save_steps: int = 50
    """Save a checkpoint every N rollout steps (0: only the final model)."""
    packing: bool = True
    """Run each micro-batch as one padding-free row with each prompt computed once for its K completions."""
    watch_reward: str | None = None
    """A second judge of every step's samples (gold:NAME, another rm:DIR, ...), logged as watch/score: when the
    training reward keeps rising while it falls over watch_window steps, a reward-hacking warning is printed."""
    watch_window: int = 5
    """Rollout steps the reward-hacking check looks back over (>= 3)."""


@dataclass
class PPOConfig(OnlineConfig):
    """PPO (InstructGPT): value model, GAE, per-token KL penalty, clipped surrogate, several epochs."""

    output_dir: str = "outputs/ppo"
    """Where final/, checkpoints/, metrics.jsonl and config.yaml are written."""
    ppo_epochs: int = 4
    """Passes over each rollout (PPO's K epochs)."""
    batch_size: int = 4
    """Sequences per forward/backward pass; an optimizer step takes batch_size x grad_accum sequences."""


@dataclass
class A2CConfig(OnlineConfig):
    """A2C: value-model baseline with GAE, one policy-gradient step per rollout, unclipped value loss."""

    output_dir: str = "outputs/a2c"
    """Where final/, checkpoints/, metrics.jsonl and config.yaml are written."""
    value_clip_eps: float | None = None
    """Clip range of the value loss (None: plain squared error)."""


@dataclass
class RLOOConfig(OnlineConfig):
    """RLOO: K samples per prompt, leave-one-out baseline on the KL-penalised sequence reward."""

    output_dir: str = "outputs/rloo"
    """Where final/, checkpoints/, metrics.jsonl and config.yaml are written."""
    num_generations: int = 4
    """Completions sampled per prompt (K); group methods need K >= 2."""
    batch_size: int = 32
    """Sequences per forward/backward pass; an optimizer step takes batch_size x grad_accum sequences."""
    whiten_advantages: bool = False
    """Normalise advantages over the rollout's real tokens (mean 0, std 1)."""


@dataclass
class GRPOConfig(OnlineConfig):
    """GRPO: K samples per prompt, group-normalised advantages, KL to the reference as a loss term."""

    output_dir: str = "outputs/grpo"
    """Where final/, checkpoints/, metrics.jsonl and config.yaml are written."""
    num_generations: int = 4
    """Completions sampled per prompt (K); group methods need K >= 2."""
    batch_size: int = 32
    """Sequences per forward/backward pass; an optimizer step takes batch_size x grad_accum sequences."""
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = "grpo"
    """grpo: (r−mean)/std, sequence-mean loss; dr_grpo: r−mean, token sums / max_new_tokens; dapo: (r−mean)/std, token mean."""
    kl_coef: float = 0.04
    """β of the KL loss term (GRPO paper: 0.04; Dr. GRPO and DAPO use 0)."""
    kl_in: Literal["reward", "loss"] = "loss"
    """Where the KL penalty goes: into the per-token reward (PPO) or a loss term (GRPO)."""
    kl_estimator: Literal["k1", "k3"] = "k3"
    """Per-token KL estimator (GRPO: k3, unbiased and ≥ 0)."""
    whiten_advantages: bool = False
    """Normalise advantages over the rollout's real tokens (mean 0, std 1)."""


@dataclass
class ReinforceConfig(OnlineConfig):
    """REINFORCE++: returns-to-go of KL-shaped token rewards, normalised over the global batch; no critic."""

    output_dir: str = "outputs/reinforce"
    """Where final/, checkpoints/, metrics.jsonl and config.yaml are written."""
    kl_estimator: Literal["k1", "k3"] = "k1"
    """Per-token KL estimator in the penalty."""


CONFIGS: dict[str, type[OnlineConfig]] = {
    "ppo": PPOConfig,
    "a2c": A2CConfig,
    "rloo": RLOOConfig,
    "grpo": GRPOConfig,
    "reinforce": ReinforceConfig,
}


# --------------------------------------------------------------------------- the rollout


@dataclass
class Rollout:
    """One rollout step's completions as tensors (see the module docstring for shapes)."""

    sequences: list[list[int]]
    """prompt + response token ids of each completion (no padding)."""
    prompt_lengths: list[int]
    response_lengths: list[int]
    mask: torch.Tensor
    """[N, T] 1 on real response tokens."""
    group_size: int
    gen_logps: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    """[N, T] the generator's log-probs of the sampled tokens."""
    scores: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    """[N] shaped rewards (one per completion); filled after scoring."""
    old_logps: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    """[N, T] the trainer's log-probs before the update; filled before the epochs."""
    ref_logps: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    """[N, T] the reference's log-probs; filled before the epochs."""
    old_values: torch.Tensor | None = None
    """[N, T] the value model's estimates before the update (methods with a critic)."""
    advantages: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    returns: torch.Tensor | None = None
    """[N, T] GAE returns, the value model's targets (methods with a critic)."""


def build_rollout(completions, group_size: int) -> Rollout:
    """Token ids and the response mask of generated `Completion`s (prompt-major, K per prompt)."""
    sequences = [list(c.prompt_token_ids) + list(c.token_ids) for c in completions]
    lengths = [len(c.token_ids) for c in completions]
    if min(lengths) < 1:
        raise TrainError("a completion has no token (max_new_tokens must be >= 1)")
    t = max(lengths)
    mask = torch.zeros(len(completions), t)
    gen = torch.zeros(len(completions), t)
    for i, c in enumerate(completions):
        mask[i, : lengths[i]] = 1.0
        if c.token_logprobs:
            gen[i, : lengths[i]] = torch.tensor(c.token_logprobs, dtype=torch.float32)
    return Rollout(
        sequences, [len(c.prompt_token_ids) for c in completions], lengths, mask, group_size, gen_logps=gen
    )


def micro_batch(
    roll: Rollout, ids: Sequence[int], pad_id: int, device, packed: bool = False
) -> dict[str, Any]:
    """The sequences `ids` as model inputs, and `mask` [b, T_b] (1 on real response tokens).

    Padded: input_ids, attention_mask, response_mask [b, L] (right padding) and positions
    [b, T_b], where response token t of row i sits in its row (clamped on padding).
    Packed: `layout`, one padding-free row in which the K completions of a prompt share the
    prompt's positions (`prefloop.models.packing`); its response tokens come in row-major order.
    """
    mask = roll.mask[list(ids), : max(roll.response_lengths[i] for i in ids)]
    if packed:
        from prefloop.data.tokenize import TokenizedSequence
        from prefloop.models.packing import pack

        seqs = [
            TokenizedSequence(
                roll.sequences[i], [0] * roll.prompt_lengths[i] + [1] * roll.response_lengths[i]
            )
            for i in ids
        ]
        return {"layout": pack(seqs).to(device), "mask": mask.to(device)}
    width = max(len(roll.sequences[i]) for i in ids)
    t_b = mask.shape[1]
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    response = torch.zeros((len(ids), width), dtype=torch.long)
    positions = torch.zeros((len(ids), t_b), dtype=torch.long)
    for row, i in enumerate(ids):
        s, p, n = roll.sequences[i], roll.prompt_lengths[i], roll.response_lengths[i]
        input_ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention[row, : len(s)] = 1
        response[row, p : p + n] = 1
        positions[row] = torch.clamp(torch.arange(t_b) + p, max=width - 1)
    out = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "response_mask": response,
        "positions": positions,
        "mask": mask,
    }
    return {k: v.to(device) for k, v in out.items()}


def _unflatten(mask: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Values of the real response tokens in row-major order [M] -> [b, T_b] with 0 on padding."""
    return torch.zeros(mask.shape, dtype=flat.dtype, device=flat.device).masked_scatter(mask.bool(), flat)


def _packed_token_logps(model, mb: dict[str, Any], with_entropy: bool):
    from prefloop.models.logps import _logps_and_entropy, _split_lm, head_logps
    from prefloop.models.packing import _forward_kwargs, packed_hidden

    layout = mb["layout"]
    parts = _split_lm(model)
    if parts is None:
        logits = model(**_forward_kwargs(layout)).logits[0][layout.loss_pos].float()
        tok, ent = _logps_and_entropy(logits, layout.loss_targets, with_entropy)
    else:
        body, head = parts
        picked = packed_hidden(body, layout)[layout.loss_pos]
        tok, ent = head_logps(head, picked, layout.loss_targets, with_entropy=with_entropy)
    mask = mb["mask"]
    return _unflatten(mask, tok), (_unflatten(mask, ent) if ent is not None else None)


def token_logps(
    model: torch.nn.Module, mb: dict[str, Any], with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(y_t) (and entropy) of each response token of a micro-batch: [b, T_b], 0 on padding."""
    if "layout" in mb:
        return _packed_token_logps(model, mb, with_entropy)
    from prefloop.models.logps import response_token_logps

    args = (model, mb["input_ids"], mb["attention_mask"], mb["response_mask"])
    ent: torch.Tensor | None = None
    if with_entropy:
        full, ent = response_token_logps(*args, with_entropy=True)
    else:
        full = response_token_logps(*args)
    logps = full.gather(1, mb["positions"]) * mb["mask"]
    if ent is None:
        return logps, None
    return logps, ent.gather(1, mb["positions"]) * mb["mask"]


# --------------------------------------------------------------------------- value models


def _body_and_head(model) -> tuple[torch.nn.Module, torch.nn.Module]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(base, base.base_model_prefix)
    head = getattr(base, "score", None) or getattr(base, "classifier", None)
    if head is None:
        raise TrainError(f"{type(base).__name__}: no scalar head (score / classifier) to use as a value head")
    return body, head


class ValueModel(torch.nn.Module):
    """V(state) at every position: a sequence-classification model's scalar head on each hidden state."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def body_and_head(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        return _body_and_head(self.model)


class SharedValueHead(torch.nn.Module):
    """A scalar head on the policy's own trunk (the trunk is the policy's; only the head is new).

    Costs a second trunk forward per micro-batch (the policy's log-probs take the first).
    """

    _policy: torch.nn.Module

    def __init__(self, policy: torch.nn.Module, hidden_size: int):
        super().__init__()
        object.__setattr__(self, "_policy", policy)  # not a submodule: its weights belong to the policy
        self.head = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.head.bias)
        torch.nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(hidden_size + 1))

    def body_and_head(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        from prefloop.models.logps import _split_lm

        parts = _split_lm(self._policy)
        if parts is None:
            raise TrainError("value_head=shared needs a decoder body with a plain linear LM head")
        return parts[0], self.head


def token_values(value_model, mb: dict[str, Any]) -> torch.Tensor:
    """V_t of each response token: the value at the position that predicts it ([b, T_b], 0 on padding)."""
    body, head = value_model.body_and_head()
    dtype = next(head.parameters()).dtype
    if "layout" in mb:
        from prefloop.models.packing import packed_hidden

        layout = mb["layout"]
        hidden = packed_hidden(body, layout)[layout.loss_pos]
        return _unflatten(mb["mask"], head(hidden.to(dtype)).squeeze(-1).float())
    hidden = body(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"]).last_hidden_state
    values = head(hidden.to(dtype)).squeeze(-1).float()
    return values.gather(1, (mb["positions"] - 1).clamp_min(0)) * mb["mask"]


def value_source(cfg: OnlineConfig, tokenizer) -> str:
    """Which checkpoint the separate value model starts from (InstructGPT: the reward model)."""
    if cfg.value_model == "policy":
        return cfg.model
    if cfg.value_model != "auto":
        return cfg.value_model
    from prefloop.models.load import load_tokenizer
    from prefloop.rewards.spec import RewardSpecError, reward_model_dir

    spec = cfg.reward.strip()
    spec = spec[3:] if spec.startswith("rm:") else spec
    try:
        rm_dir = reward_model_dir(spec)
    except RewardSpecError:
        return cfg.model  # not a single reward model (a callable, a sum, ...)
    if load_tokenizer(str(rm_dir)).get_vocab() == tokenizer.get_vocab():
        return str(rm_dir)
    return cfg.model


def disable_dropout(model: torch.nn.Module) -> None:
    """p = 0 in every dropout layer and attention-dropout attribute (see the module notes)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name in ("attention_dropout", "dropout"):
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)


class ActorCritic(torch.nn.Module):
    """The trained modules of a run: the policy and, for critic methods, the value model."""

    def __init__(self, policy: torch.nn.Module, value: torch.nn.Module | None):
        super().__init__()
        self.policy = policy
        self.value = value


# --------------------------------------------------------------------------- algorithms


@dataclass(frozen=True)
class Algorithm:
    """What differs between the online methods: the critic, the advantage function, the epochs."""

    uses_critic: bool
    advantages: Callable[[Rollout, OnlineConfig, float], tuple[torch.Tensor, torch.Tensor | None]]
    """(rollout, config, β) -> (advantages [N, T], value targets [N, T] or None)."""


def _shaped_token_rewards(roll: Rollout, cfg: OnlineConfig, beta: float) -> torch.Tensor:
    from prefloop.losses.rl import kl_penalized_rewards

    coef = beta if cfg.kl_in == "reward" else 0.0
    rewards, _ = kl_penalized_rewards(
        roll.scores, roll.old_logps, roll.ref_logps, roll.mask, coef, cfg.kl_estimator
    )
    return rewards


def gae_advantages(roll: Rollout, cfg: OnlineConfig, beta: float):
    """PPO / A2C: GAE over the KL-shaped per-token rewards and the old values."""
    from prefloop.losses.common import whiten
    from prefloop.losses.rl import gae

    rewards = _shaped_token_rewards(roll, cfg, beta)
    if cfg.whiten_rewards:
        rewards = whiten(rewards, roll.mask, shift_mean=False)
    assert roll.old_values is not None  # GAE's methods have a critic
    advantages, returns = gae(rewards, roll.old_values, roll.mask, cfg.gamma, cfg.lam)
    return advantages, returns


def group_baseline_advantages(roll: Rollout, cfg: OnlineConfig, beta: float):
    """RLOO / GRPO: the sequence reward (minus β·KL when the KL is in the reward) against its group."""
    from prefloop.losses.rl import group_advantages

    seq_reward = _shaped_token_rewards(roll, cfg, beta).sum(dim=1)
    grouped = seq_reward.view(-1, roll.group_size)
    advantages = group_advantages(grouped, cfg.group_baseline).reshape(-1)
    return advantages[:, None] * roll.mask, None


def reinforce_pp_advantages(roll: Rollout, cfg: OnlineConfig, beta: float):
    """REINFORCE++: returns-to-go of the KL-shaped token rewards, whitened over the global batch."""
    from prefloop.losses.rl import reinforce_plus_plus_advantages

    return reinforce_plus_plus_advantages(_shaped_token_rewards(roll, cfg, beta), roll.mask, cfg.gamma), None


ALGORITHMS: dict[str, Algorithm] = {
    "ppo": Algorithm(uses_critic=True, advantages=gae_advantages),
    "a2c": Algorithm(uses_critic=True, advantages=gae_advantages),
    "rloo": Algorithm(uses_critic=False, advantages=group_baseline_advantages),
    "grpo": Algorithm(uses_critic=False, advantages=group_baseline_advantages),
    "reinforce": Algorithm(uses_critic=False, advantages=reinforce_pp_advantages),
}

GroupBaseline = Literal["grpo", "dr_grpo", "rloo"]
Aggregation = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]
GRPO_LOSS_TYPES: dict[
    str, tuple[GroupBaseline, Aggregation]
] = {  # loss_type -> (group baseline, loss aggregation)
    "grpo": ("grpo", "seq-mean-token-mean"),
    "dr_grpo": ("dr_grpo", "seq-mean-token-sum"),
    "dapo": ("grpo", "token-mean"),
}


def resolve(cfg: OnlineConfig, algorithm: str) -> OnlineConfig:
    """Fill the fields one setting implies (GRPO's loss_type) and check the rest."""
    import dataclasses

    from prefloop.config import ConfigError

    if algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown online algorithm {algorithm!r}; known: {sorted(ALGORITHMS)}")
    if isinstance(cfg, GRPOConfig):
        baseline, aggregation = GRPO_LOSS_TYPES[cfg.loss_type]
        cfg = dataclasses.replace(cfg, group_baseline=baseline, loss_aggregation=aggregation)
    elif algorithm == "rloo":
        cfg = dataclasses.replace(cfg, group_baseline="rloo")
    problems = []
    if not cfg.reward:
        problems.append("no reward: pass --reward SPEC")
    if cfg.watch_window < 3:
        problems.append(f"watch_window must be >= 3, got {cfg.watch_window}")
    if cfg.prompts_per_step < 1 or cfg.num_generations < 1:
        problems.append("prompts_per_step and num_generations must be >= 1")
    if ALGORITHMS[algorithm].advantages is group_baseline_advantages and cfg.num_generations < 2:
        problems.append(
            f"{algorithm} needs num_generations >= 2 (a group baseline), got {cfg.num_generations}"
        )
    if cfg.ppo_epochs < 1:
        problems.append("ppo_epochs must be >= 1")
    if cfg.ptx_coef > 0 and not cfg.ptx_data:
        problems.append("ptx_coef > 0 needs --ptx-data")
    if cfg.temperature <= 0:
        problems.append("temperature must be > 0 (online RL samples)")
    if cfg.generator == "vllm" and cfg.ray:
        problems.append(
            "--generator vllm runs in this process; --ray rollout actors sample with the HF backend"
        )
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg


# --------------------------------------------------------------------------- the loop


def _seeded_permutation(n: int, *keys: int) -> list[int]:
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + k) % (2**62)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def prompt_seed(seed: int, step: int, position: int, stream: int = 0) -> int:
    """The sampling seed of the prompt at `position` in rollout step `step` (`prompt_seeds`).

    `stream` > 0 gives another, independent seed for the same prompt (a loop that draws a second
    kind of sample per prompt, e.g. Nash-MD's alternative reply); stream 0 is the completions'."""
    mixed = 0
    for k in (seed, step, position, *((stream,) if stream else ())):
        mixed = (mixed * 1_000_003 + k) % (2**62)
    return mixed


def per_prompt_seeds(prompt_seeds: str, seed: int, world_size: int) -> int | None:
    """The run seed `sample_completions` derives each prompt's seed from, or None (one seeded stream).

    'on': per-prompt seeds; 'off': one stream (refused with several processes, whose shares
    would then depend on the number of processes); 'auto': per-prompt seeds with several."""
    if prompt_seeds == "off" and world_size > 1:
        raise TrainError(
            f"{world_size} processes: each samples its share of a step's prompts with per-prompt "
            "seeds; --prompt-seeds off needs one process"
        )
    return seed if prompt_seeds == "on" or (prompt_seeds == "auto" and world_size > 1) else None


def sample_completions(generator, prompts: list, k: int, first: int, seeds: int | None, step: int) -> list:
    """K completions of each prompt, prompt-major; `prompts` sit at positions `first`, `first`+1, ...
    of the step. `seeds` (`per_prompt_seeds`): each prompt sampled with its own `prompt_seed`."""
    if seeds is None:
        return generator.generate(prompts, k)
    out = []
    for j, prompt in enumerate(prompts):
        for c in generator.generate([prompt], k, seed=prompt_seed(seeds, step, first + j)):
            c.prompt_index = j
            out.append(c)
    return out


def gather_shares(dist, first: int, local: list, *aligned: list) -> tuple[list, ...]:
    """The whole step's completions, in prompt order, on every rank, from each rank's share.

    `local`: this rank's completions of the step's prompts `first`, `first`+1, ...; their
    `prompt_index` is moved by `first` to the place among the step's prompts. `aligned`: lists
    that go with them (one entry per completion, or empty: scores, alternative replies), gathered alike.
    Returns (completions, *aligned)."""
    for c in local:
        c.prompt_index += first
    parts = dist.gather_object((local, *aligned))
    return tuple([x for part in parts for x in part[i]] for i in range(1 + len(aligned)))


def _generator_options(cfg: OnlineConfig) -> dict[str, Any]:
    return {
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "batch_size": cfg.gen_batch_size,
        "max_prompt_length": cfg.max_prompt_length,
        "progress": False,
        "seed": cfg.seed,
    }


def _ray_policy_generator(cfg: OnlineConfig):
    """What a rollout actor builds: the policy as the trainer built it (LoRA included), and its HF generator."""
    from prefloop.generation.hf import HFGenerator
    from prefloop.models.load import resolve_device
    from prefloop.train.run import load_policy

    tokenizer, policy = load_policy(cfg, resolve_device(cfg.device))
    policy.eval()
    return HFGenerator(policy, tokenizer, **_generator_options(cfg))


def _ray_generation(cfg: OnlineConfig, reward):
    """(RayGenerator, RayReward) for --ray: rollout actors sample, reward actors score (prefloop.dist)."""
    import functools

    from prefloop.dist import RayGenerator, RayReward, ray_workers, start_ray
    from prefloop.rewards import load_reward

    start_ray(address=cfg.ray_address)
    generator = RayGenerator(
        ray_workers(_ray_policy_generator, (cfg,), n=cfg.ray_rollout_workers),
        sync_timeout_s=cfg.sync_timeout_s,
    )
    if cfg.reward:  # a reward given as an object (train(reward=...)) stays in this process
        build = functools.partial(load_reward, device=cfg.device, batch_size=cfg.reward_batch_size)
        reward = RayReward(ray_workers(build, (cfg.reward,), n=cfg.ray_reward_workers), name=cfg.reward)
    return generator, reward


def _vllm_generator(cfg: OnlineConfig, tokenizer, rank: int):
    """An in-process vLLM engine over the policy's starting weights (`prefloop.generation.vllm`)."""
    from prefloop.generation.vllm import VLLMGenerator

    options = _generator_options(cfg)
    del options["batch_size"], options["progress"]  # vLLM schedules its own batches
    return VLLMGenerator(
        cfg.model,
        tokenizer,
        dtype=cfg.dtype,
        sync_timeout_s=cfg.sync_timeout_s,
        name=f"rank {rank} (in-process vLLM engine)",
        **options,
    )


def _read_prompts(path: str):
    from prefloop.data.io import read_records

    if not path:
        raise FileNotFoundError("no prompts: pass --data prompts.jsonl")
    records = read_records(path, kind="prompt")
    if not records:
        raise TrainError(f"{path}: no prompts")
    return records


def _ptx_sequences(cfg: OnlineConfig, tokenizer):
    from prefloop.data.io import read_records
    from prefloop.data.tokenize import encode

    if cfg.ptx_coef <= 0:
        return []
    from prefloop.data.records import Demonstration

    assert cfg.ptx_data  # checked in resolve()
    records = [r for r in read_records(cfg.ptx_data, kind="demonstration") if isinstance(r, Demonstration)]
    return [encode(tokenizer, r.prompt, r.response, cfg.max_length, cfg.max_prompt_length) for r in records]


def train(cfg: OnlineConfig, records=None, reward=None, algorithm: str | None = None) -> Path:
    """Run online RL as `cfg` (its command) says; returns OUTPUT/final (the policy).

    `records` (Prompt records) and `reward` (a `RewardFn`) replace --data and --reward when given.
    """
    from prefloop.data.tokenize import pad_batch
    from prefloop.eval.stats import RewardHackingMonitor
    from prefloop.generation.hf import HFGenerator
    from prefloop.losses.rl import (
        AdaptiveKLController,
        FixedKLController,
        aggregate_loss,
        kl_loss,
        logprob_mismatch,
        ppo_policy_loss,
        ptx_loss,
        truncated_importance_weights,
        value_loss,
    )
    from prefloop.models.load import load_reward_model, torch_dtype
    from prefloop.models.reference import Reference
    from prefloop.rewards import RewardShaper, RewardShaping, call_reward, load_reward
    from prefloop.train.batches import to_device
    from prefloop.train.checkpoint import trainable_state_dict
    from prefloop.train.run import (
        begin,
        load_policy,
        prepare_output_dir,
        prepare_trainable,
        process,
        save_final,
        start_run,
    )
    from prefloop.train.schedule import StepSchedule

    algorithm = algorithm or next((k for k, c in CONFIGS.items() if type(cfg) is c), "ppo")
    if reward is not None and not cfg.reward:
        cfg.reward = getattr(reward, "name", None) or "given"
    cfg = resolve(cfg, algorithm)
    algo = ALGORITHMS[algorithm]
    device = begin(cfg)
    prompts = list(records) if records is not None else _read_prompts(cfg.data)
    if reward is None:
        reward = load_reward(cfg.reward, device=cfg.device, batch_size=cfg.reward_batch_size)
    out = prepare_output_dir(cfg)
    tokenizer, policy = load_policy(cfg, device)
    disable_dropout(policy)
    pad_id = tokenizer.pad_token_id

    value: torch.nn.Module | None = None
    if algo.uses_critic:
        if cfg.value_head == "shared":
            hf_policy: Any = policy  # a transformers model (maybe PEFT-wrapped): it has a config
            value = SharedValueHead(policy, hf_policy.config.hidden_size).to(device)
        else:
            source = value_source(cfg, tokenizer)
            critic = load_reward_model(source, dtype=torch_dtype(cfg.dtype))
            value = ValueModel(prepare_trainable(critic, cfg, "SEQ_CLS")).to(device)
        disable_dropout(value)
    packed = False
    if cfg.packing:
        from prefloop.models.packing import enable_packing

        packed = enable_packing(policy) and (not isinstance(value, ValueModel) or enable_packing(value.model))
    model = ActorCritic(policy, value)
    reference = Reference(policy, lora=cfg.lora, copy_policy=True)
    generator: Any
    if cfg.generator == "vllm":  # an in-process engine; it gets the weights after every update
        generator = _vllm_generator(cfg, tokenizer, process(cfg).rank)
    else:
        generator = HFGenerator(policy, tokenizer, **_generator_options(cfg))
    if cfg.ray:  # rollout and reward actors; weights go to the rollout actors after every update
        generator, reward = _ray_generation(cfg, reward)
    other_sampler = cfg.ray or cfg.generator == "vllm"  # the generator is not the trainer
    use_tis = cfg.tis == "on" or (cfg.tis == "auto" and other_sampler)
    shaper = RewardShaper(
        RewardShaping(
            missing_eos_penalty=cfg.missing_eos_penalty,
            length_penalty=cfg.length_penalty,
            length_target=cfg.length_target,
            normalize=cfg.reward_normalize,
            clip=cfg.reward_clip,
        )
    )
    controller = (
        AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
        if cfg.adaptive_kl
        else FixedKLController(cfg.kl_coef)
    )
    ptx = _ptx_sequences(cfg, tokenizer)
    watch = (
        load_reward(cfg.watch_reward, device=cfg.device, batch_size=cfg.reward_batch_size)
        if cfg.watch_reward
        else None
    )
    monitor = RewardHackingMonitor(cfg.watch_window)
    order = StepSchedule(len(prompts), cfg.prompts_per_step, 1, cfg.seed, cfg.epochs, cfg.max_steps)

    def extra_state() -> dict[str, Any]:
        return {
            "generator": generator.rng_state(),
            "kl_controller": controller.state_dict(),
            "reward_shaper": shaper.state_dict(),
            "hacking_monitor": monitor.state_dict(),
        }

    run = start_run(
        cfg,
        out,
        model,
        algorithm,
        total_steps=order.total_steps,
        extra_state=extra_state,
        shards_rollouts=True,
    )
    dist = run.dist
    if dist.world_size > 1 and cfg.ray:
        raise TrainError(
            f"{dist.world_size} processes: online loops shard their prompts across processes; "
            "--ray needs one process"
        )
    seeds = per_prompt_seeds(cfg.prompt_seeds, cfg.seed, dist.world_size)
    if run.restored:
        generator.set_rng_state(run.restored["generator"])
        controller.load_state_dict(run.restored["kl_controller"])
        shaper.load_state_dict(run.restored["reward_shaper"])
        monitor.load_state_dict(run.restored["hacking_monitor"])
    if cfg.generator == "vllm":  # the policy as trained so far (a resumed run, a grown vocabulary)
        generator.update_weights(policy)
    model.train()
    mb_size = cfg.batch_size * cfg.grad_accum

    for step in range(run.start_step, run.total_steps):
        started = time.perf_counter()
        timings: dict[str, float] = {}

        # 1-2. prompts and completions: this rank's share of the step's prompts (all of them alone)
        picked = [prompts[i] for ids in order.micro_batches(step) for i in ids]
        lo, hi = dist.share(len(picked))
        mine = picked[lo:hi]
        tick = time.perf_counter()
        local = sample_completions(generator, [p.prompt for p in mine], cfg.num_generations, lo, seeds, step)
        timings["time/generate_s"] = time.perf_counter() - tick

        # 3. rewards of this rank's completions
        tick = time.perf_counter()
        mine_flat = [mine[c.prompt_index] for c in local]
        texts = [c.text for c in local]
        meta = [p.meta for p in mine_flat]
        prompt_texts = [p.prompt for p in mine_flat]
        local_raw = call_reward(reward, prompt_texts, texts, meta=meta, batch=step + 1)
        local_watched = (
            call_reward(watch, prompt_texts, texts, meta=meta, batch=step + 1) if watch is not None else []
        )
        # the whole rollout, in prompt order, on every rank
        completions, raw, watched = gather_shares(dist, lo, local, local_raw, local_watched)
        roll = build_rollout(completions, cfg.num_generations)
        n = len(completions)
        own = range(lo * cfg.num_generations, hi * cfg.num_generations)  # this rank's sequences
        shaped, reward_metrics = shaper(raw, completions)
        if watch is not None:
            reward_metrics["watch/score"] = sum(watched) / len(watched)
            warning = monitor.update(step + 1, sum(raw) / len(raw), reward_metrics["watch/score"])
            reward_metrics["watch/hacking"] = float(warning is not None)
            if warning and dist.is_main:
                print(f"warning: {warning} ({cfg.watch_reward} is the watch)", file=sys.stderr)
        roll.scores = torch.tensor(shaped, dtype=torch.float32)
        timings["time/reward_s"] = time.perf_counter() - tick

        # 4. old log-probs, reference log-probs, old values: in the first epoch's micro-batches
        tick = time.perf_counter()
        epoch_orders = [_seeded_permutation(n, cfg.seed, step, e) for e in range(cfg.ppo_epochs)]
        first = epoch_orders[0]
        roll.old_logps = torch.zeros_like(roll.mask)
        roll.ref_logps = torch.zeros_like(roll.mask)
        roll.old_values = torch.zeros_like(roll.mask) if value is not None else None
        # Advantages that do not read the old log-probs (GRPO's, with the KL in the loss) let the
        # first minibatch take them from its own training forward: the same numbers, one pass fewer.
        beta = controller.value
        late_old = not algo.uses_critic and (cfg.kl_in == "loss" or beta == 0)
        first_minibatch = [i for i in first[:mb_size] if i in own]
        with torch.no_grad():
            for part, skip_old in (
                (first_minibatch, late_old),
                ([i for i in first[mb_size:] if i in own], False),
            ):
                for start in range(0, len(part), cfg.batch_size):
                    ids = part[start : start + cfg.batch_size]
                    mb = micro_batch(roll, ids, pad_id, device, packed)
                    t_b = mb["mask"].shape[1]
                    if not skip_old:
                        roll.old_logps[ids, :t_b] = token_logps(policy, mb)[0].cpu()
                    ref_logps = reference.apply(functools.partial(token_logps, mb=mb))[0]
                    roll.ref_logps[ids, :t_b] = ref_logps.cpu()
                    if value is not None:
                        roll.old_values[ids, :t_b] = token_values(value, mb).cpu()  # type: ignore[index]
        # each row was computed by the rank that owns it (zeros elsewhere): the sum is the whole rollout
        roll.old_logps, roll.ref_logps = dist.sum_tensor(roll.old_logps), dist.sum_tensor(roll.ref_logps)
        if roll.old_values is not None:
            roll.old_values = dist.sum_tensor(roll.old_values)
        timings["time/logprobs_s"] = time.perf_counter() - tick

        # 5. advantages
        advantages, returns = algo.advantages(roll, cfg, beta)
        if cfg.whiten_advantages:
            from prefloop.losses.common import whiten

            advantages = whiten(advantages, roll.mask)
        roll.advantages, roll.returns = advantages, returns

        # 6. update: epochs x minibatches x micro-batches
        parts: list[dict[str, float]] = []
        first_dev, stopped, optimizer_steps, tokens = None, False, 0, 0
        timings["time/train_forward_backward_s"] = 0.0
        timings["time/optimizer_s"] = 0.0
        grad_norms = []
        for epoch, perm in enumerate(epoch_orders):
            for mb_start in range(0, n, mb_size):
                minibatch = perm[mb_start : mb_start + mb_size]
                mb_tokens = float(roll.mask[minibatch].sum())
                owned = [i for i in minibatch if i in own]  # this rank's part of the minibatch
                tick = time.perf_counter()
                for start in range(0, len(owned), cfg.batch_size):
                    ids = owned[start : start + cfg.batch_size]
                    mb = micro_batch(roll, ids, pad_id, device, packed)
                    t_b = mb["mask"].shape[1]
                    sl = (ids, slice(0, t_b))
                    adv = roll.advantages[sl].to(device)
                    logps, entropy = token_logps(policy, mb, with_entropy=cfg.entropy_coef > 0)
                    if late_old and epoch == 0 and mb_start == 0:
                        roll.old_logps[sl] = logps.detach().cpu()
                    old = roll.old_logps[sl].to(device)
                    tis_metrics: dict[str, float] = {}
                    if use_tis and roll.gen_logps is not None:  # the generator is not the trainer
                        w, tis_metrics = truncated_importance_weights(
                            old, roll.gen_logps[sl].to(device), mb["mask"], cfg.tis_cap, cfg.tis_seq_threshold
                        )
                        adv = adv * w  # w >= 0 scales each token's clipped surrogate exactly by w
                    # Weight of this micro-batch in the minibatch (token- or sequence-means of the whole minibatch).
                    weight = (
                        float(mb["mask"].sum()) / max(mb_tokens, 1.0)
                        if cfg.loss_aggregation == "token-mean"
                        else len(ids) / len(minibatch)
                    )
                    loss, metrics = ppo_policy_loss(
                        logps, old, adv, mb["mask"], cfg.clip_eps, cfg.dual_clip, cfg.loss_aggregation
                    )
                    metrics.update(tis_metrics)
                    if epoch == 0 and mb_start == 0:
                        dev = (torch.exp(logps - old) - 1).abs()[mb["mask"].bool()].max().item()
                        first_dev = dev if first_dev is None else max(first_dev, dev)
                    if cfg.kl_in == "loss" and beta > 0:
                        ref = roll.ref_logps[sl].to(device)
                        term, kl_m = kl_loss(logps, ref, mb["mask"], cfg.kl_estimator, cfg.loss_aggregation)
                        loss = loss + beta * term
                        metrics.update(kl_m)
                    if cfg.loss_aggregation == "seq-mean-token-sum":
                        loss = loss / cfg.max_new_tokens  # Dr. GRPO: the generation budget as the constant
                    if entropy is not None:
                        ent = aggregate_loss(entropy, mb["mask"], "token-mean")
                        loss = loss - cfg.entropy_coef * ent
                        metrics["entropy"] = ent.item()
                    if value is not None:
                        assert roll.old_values is not None and roll.returns is not None
                        v = token_values(value, mb)
                        v_loss, v_metrics = value_loss(
                            v,
                            roll.old_values[sl].to(device),
                            roll.returns[sl].to(device),
                            mb["mask"],
                            cfg.value_clip_eps,
                        )
                        loss = loss + cfg.vf_coef * v_loss
                        metrics.update(v_metrics)
                        metrics["value/loss"] = v_loss.item()
                    (loss * weight).backward()
                    metrics["loss"] = loss.item()
                    parts.append(metrics)
                    tokens += mb["layout"].num_slots if "layout" in mb else int(mb["attention_mask"].sum())
                if ptx and dist.is_main:  # once per optimizer step, not once per rank
                    pick = _seeded_permutation(len(ptx), cfg.seed, step, 7, optimizer_steps)[
                        : cfg.ptx_batch_size
                    ]
                    batch = to_device(pad_batch([ptx[i] for i in pick], pad_id), device)
                    from prefloop.models.logps import response_token_logps

                    lp = response_token_logps(
                        policy, batch["input_ids"], batch["attention_mask"], batch["response_mask"]
                    )
                    p_loss, p_metrics = ptx_loss(lp, batch["response_mask"], cfg.ptx_coef)
                    p_loss.backward()
                    if owned:
                        parts[-1].update(p_metrics)
                    else:
                        parts.append(p_metrics)
                timings["time/train_forward_backward_s"] += time.perf_counter() - tick
                tick = time.perf_counter()
                norm = run.apply_gradients()
                timings["time/optimizer_s"] += time.perf_counter() - tick
                if norm is not None:
                    grad_norms.append(norm)
                optimizer_steps += 1
                if cfg.early_stop_kl is not None:  # the same decision on every rank
                    last = parts[len(parts) - math.ceil(len(owned) / cfg.batch_size) :] if owned else []
                    approx_kl = run.reduce_metrics([(m, 1.0) for m in last]).get("policy/approx_kl", 0.0)
                    if approx_kl > cfg.early_stop_kl:
                        stopped = True
                        break
            if stopped:
                break

        if late_old:  # the first minibatch's old log-probs came from its owners' training forwards
            late = torch.zeros_like(roll.old_logps)
            late[first_minibatch] = roll.old_logps[first_minibatch]
            late = dist.sum_tensor(late)
            roll.old_logps[first[:mb_size]] = late[first[:mb_size]]
        first_devs = [d for d in dist.gather_object(first_dev) if d is not None]
        first_dev = max(first_devs) if first_devs else None

        # 7. KL control, metrics
        kl_tokens = (roll.old_logps - roll.ref_logps) * roll.mask
        seq_kl = kl_tokens.sum(dim=1)
        measured_kl = float(seq_kl.mean())
        controller.update(measured_kl, n)
        real = roll.mask.bool()
        raw_t = torch.tensor(raw)
        metrics = {
            **run.reduce_metrics([(m, 1.0) for m in parts]),
            "score/mean": float(raw_t.mean()),
            "score/std": float(raw_t.std()) if n > 1 else 0.0,
            **reward_metrics,
            "kl": measured_kl,
            "kl/k3_token_mean": float(_kl_tokens_k3(roll).sum() / roll.mask.sum()),
            "kl/coef": beta,
            "kl/coef_next": controller.value,
            "advantages/mean": float(advantages[real].mean()),
            "advantages/std": float(advantages[real].std()) if real.sum() > 1 else 0.0,
            "response_length": float(roll.mask.sum(dim=1).mean()),
            "eos_fraction": sum(c.stopped for c in completions) / n,
            **logprob_mismatch(roll.gen_logps, roll.old_logps, roll.mask),
            "ratio/first_minibatch_max_dev": first_dev if first_dev is not None else 0.0,
            "optimizer_steps": optimizer_steps,
            "early_stopped": int(stopped),
            "completions": n,
            "generated_tokens": int(roll.mask.sum()),
            **({"grad_norm": sum(grad_norms) / len(grad_norms)} if grad_norms else {}),
            **timings,
        }
        run.step_done(step, metrics, tokens, started, apply=False)
        if cfg.ray:  # adapter-only with LoRA: the actors built the same adapters (`_ray_policy_generator`)
            generator.update_weights(trainable_state_dict(policy))
        elif cfg.generator == "vllm":  # the full weights, LoRA merged (`merged_state_dict`)
            generator.update_weights(policy)

    run.close()
    if dist.is_main:
        save_final(policy, tokenizer, out)
    dist.barrier()
    return out / "final"


def _kl_tokens_k3(roll: Rollout) -> torch.Tensor:
    from prefloop.losses.common import kl_estimate

    return kl_estimate(roll.old_logps, roll.ref_logps, "k3") * roll.mask


def main(argv: list[str], command: str = "ppo") -> None:
    if command not in CONFIGS:
        raise SystemExit(f"prefloop: {command} is not an online RL command ({', '.join(CONFIGS)})")
    from prefloop.rewards import RewardError

    def run(cfg: OnlineConfig) -> Path:
        try:
            return train(cfg, algorithm=command)
        except RewardError as exc:  # a bad reward is bad input: one line, exit 2
            raise TrainError(str(exc)) from None

    run_cli(CONFIGS[command], argv, command, run)


__all__ = [
    "ALGORITHMS",
    "CONFIGS",
    "A2CConfig",
    "ActorCritic",
    "GRPOConfig",
    "OnlineConfig",
    "PPOConfig",
    "RLOOConfig",
    "ReinforceConfig",
    "Rollout",
    "SharedValueHead",
    "ValueModel",
    "build_rollout",
    "main",
    "train",
]
