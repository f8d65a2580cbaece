"""Training loops, one per data-flow shape.

- `prefloop.train.sft`: supervised fine-tuning on demonstrations (`prefloop sft`).
- `prefloop.train.reward_model`: scalar reward models on pairwise / ranked data (`prefloop reward`).
- `prefloop.train.preference`: the offline preference loop for DPO / IPO / KTO / Plackett-Luce DPO
  (`prefloop dpo|ipo|kto`).
- What the loops share, as functions: `config` (the common fields, `run_cli`), `schedule` (data
  order, accumulation weights, learning-rate schedule), `run` (start, `Run.step_done`, finish),
  `checkpoint`, `logs` (metrics.jsonl, TensorBoard, progress), `optim`, `batches`.
  Log-probs of responses and the reference model live in `prefloop.models` (`logps`, `reference`).
- One process or many: the loops call `Run.micro_batches` / `Run.loss_weights` / `Run.backward` /
  `Run.reduce_metrics`, which go through `prefloop.dist` (docs/scaling.md).

Each loop module has `<Name>Config`, `train(cfg, records=None) -> Path` (OUTPUT/final) and
`main(argv, command)` for the CLI.
"""
