"""Images: a tiny denoising diffusion model on scikit-learn's 8×8 digits, and a gold judge over them.

A room of its own (not `prefloop.tasks`, which holds text prompt lists, nor `prefloop.models`,
which loads Hugging Face language models): the image task needs its own data, model, sampler
and gold scorer, and nothing else in prefloop imports them except the Diffusion-DPO loop
(`prefloop.train.diffusion_dpo`). Everything runs on a CPU in seconds to minutes.

- `digits`: the 1,797 8×8 digit images that ship inside scikit-learn (no download), scaled to
  [−1, 1]; a seeded held-out split; a small classifier trained on them, and `DigitGold`, the
  hidden "true" preference: the classifier's probability that an image is the target digit.
- `ddpm`: a cosine noise schedule, an MLP noise predictor with a timestep embedding, the
  denoising error ‖ε − ε_θ(x_t, t)‖² (mean over pixels), pretraining, and a seeded DDPM sampler.
"""
