"""mibench.generators: GAN image priors (StyleGAN2 and friends); importing registers the built-in kinds."""

from mibench.generators import stylegan2, tacgan  # noqa: F401  (register "stylegan2", "tacgan")
