"""The neural-network stack every trained part of manifpt shares.

- ``resnet``: ``BasicBlock`` and ``CifarResNet`` (the small-image ResNet of the attributor, the
  Marra19 / Wang20 baselines and the offline SSL encoder);
- ``nets``: the attributor's networks (``build_net``: torchvision ResNets, the CIFAR ResNet, an MLP,
  a linear probe), also used by the baselines that reuse them;
- ``train``: the one classifier training loop (``fit_classifier`` with a ``TrainConfig``), batched
  inference (``apply``, ``layer_inputs``), precise batch norm, and ``train_steps``, the fixed-step
  loop of the self-supervised encoder and the real-set autoencoder.

Splits and per-class subsampling live in ``manifpt.splits``; this package uses them.
"""
