"""Operations every layer above may use: seeded counter RNG, image transforms, imaging, atomic file IO,
the artifact cache, the worker pool, torch.distributed helpers and StyleGAN2's cache-blocked demodulation
norms. Nothing here imports a model."""
