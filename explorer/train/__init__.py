"""Training: the worker loops that run inside a trial, and the seam between them and Ray.

- ``session``    ``Session``: where a loop reports (Ray Train worker, Tune trial, or no Ray)
- ``common``     what both loops share: seeds, the batch/lr plan, optimizer, schedule, epochs
- ``pretrain``   MAE pre-training and the shared encoder cache (``ensure_encoder``)
- ``finetune``   fine-tuning with per-epoch validation and its resume state
- ``artifacts``  ``TrialArtifacts``: a trial's own record, what the results store is built from

Nothing is imported here: importing ``explorer.train.artifacts`` must not import torch.
"""
