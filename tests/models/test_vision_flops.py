"""ViT FLOPs: the closed form equals the matmuls and convolutions of the traced forward pass."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from visual_priors.models.vision import ViT, ViTConfig
from visual_priors.models.vision.flops import forward_flops_per_image, train_flops_per_image

CONFIG = ViTConfig(image_size=16, patch_size=4, width=16, depth=2, mlp_dim=24, num_heads=2,
                   num_classes=8, dtype="float32")


def _traced_matmul_flops(jaxpr: jax.extend.core.Jaxpr) -> int:
  total = 0
  for equation in jaxpr.eqns:
    if equation.primitive.name == "dot_general":
      (contracting, _), _ = equation.params["dimension_numbers"]
      lhs = equation.invars[0].aval.shape
      total += 2 * int(np.prod(equation.outvars[0].aval.shape)) * int(np.prod([lhs[i] for i in contracting]))
    elif equation.primitive.name == "conv_general_dilated":
      kernel = equation.invars[1].aval.shape  # HWIO
      total += 2 * int(np.prod(equation.outvars[0].aval.shape)) * int(np.prod(kernel[:-1]))
    for value in equation.params.values():
      for inner in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(inner, jax.extend.core.ClosedJaxpr):
          total += _traced_matmul_flops(inner.jaxpr)
        elif isinstance(inner, jax.extend.core.Jaxpr):
          total += _traced_matmul_flops(inner)
  return total


@pytest.mark.parametrize("pool_type,num_classes", [("map", 8), ("gap", 8), ("tok", 0), ("none", 0)])
def test_closed_form_equals_traced_matmuls(pool_type, num_classes):
  config = dataclasses.replace(CONFIG, pool_type=pool_type, num_classes=num_classes)
  model = nnx.eval_shape(lambda: ViT(config, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  images = jax.ShapeDtypeStruct((3, 16, 16, 3), jnp.float32)
  jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(state, images)
  assert forward_flops_per_image(config) * 3 == _traced_matmul_flops(jaxpr.jaxpr)
  assert train_flops_per_image(config) == 3 * forward_flops_per_image(config)
