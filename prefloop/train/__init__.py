"""Training loops, one per data-flow shape.

- `prefloop.train.sft`: supervised fine-tuning on demonstrations (`prefloop sft`).
- `prefloop.train.reward_model`: scalar reward models on pairwise / ranked data (`prefloop reward`).
- `prefloop.train.preference`: the offline preference loop for DPO / IPO / KTO / Plackett-Luce DPO
  (`prefloop dpo|ipo|kto`).
- `prefloop.train.common`: what the loops share (config fields, data order, checkpoints, logging).

Each loop module has `<Name>Config`, `train(cfg, records=None) -> Path` (OUTPUT/final) and
`main(argv, command)` for the CLI.
"""
