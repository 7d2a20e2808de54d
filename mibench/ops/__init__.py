"""Operations every layer above may use: seeded counter RNG, image transforms, imaging, atomic file IO,
the artifact cache, the worker pool and torch.distributed helpers. Nothing here imports a model."""
