"""Score priors: the denoiser contract and its adapters (more to come: networks, weights, training)."""
