"""Test session setup: emulate an 8-device CPU mesh and quiet TensorFlow before anything imports jax."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# grain workers and seqio read absl flags; mark them parsed so library code does not abort.
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()
