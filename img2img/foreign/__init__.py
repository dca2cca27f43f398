"""Published checkpoints of other projects, recognised from their tensors and converted."""
