"""Samplers over a denoiser prior: noise schedules and the unconditional DDIM sampler so far
(the conditional samplers of the samplers issue build on these)."""
