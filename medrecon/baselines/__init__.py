"""Classical reconstructions used as references for every diffusion result."""
