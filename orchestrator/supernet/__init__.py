"""The supernet engine: data, one-shot training (pure PyTorch), checkpoints,
subnet evaluation, export, and the Ray wrappers (trainer actor, evaluator pool)."""
