"""mibench.generators: GAN image priors (StyleGAN2 and friends); importing registers the built-in kinds."""

from mibench.generators import stylegan2  # noqa: F401  (registers "stylegan2")
