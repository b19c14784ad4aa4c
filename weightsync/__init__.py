"""Moving the trainable weights from the learner to the rollout workers (torch.distributed, in buckets): below both
stages, which each hold one end. The driver's side, which forms the group between actors, is cluster/weight_sync.py."""
