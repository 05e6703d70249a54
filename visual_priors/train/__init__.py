"""The training library: one trainer over typed configs (state, step, optimizer, checkpoints, loop); pre-training
and the adaptation stages configure it; upstream runs and trained models are read through `upstream`.

Library modules never import the command module (`commands.py`), a thin shell over them."""
