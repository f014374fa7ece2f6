"""The conv nets' compute precision: float32 (default) or bfloat16.

A model's `dtype` field (a string, so configs stay JSON) is the dtype its
convolutions, dense layers and activations compute in; its parameters, the
batch-norm statistics (flax computes them in float32 and keeps the running
averages in `param_dtype`) and everything after the net (losses, the 3DMM /
pose / SH decode, the renderer) stay float32: each net casts its outputs to
float32 where they leave it (`to_float32`).

Only bfloat16 is offered as the low precision: its 8-bit exponent is
float32's, so gradients cannot underflow and no loss scaling is needed
(float16's 5-bit exponent would need dynamic loss scaling). Its 8-bit
significand (unit roundoff 2**-8 ~ 0.4%) is what the nets' outputs lose.
"""

from __future__ import annotations

import jax.numpy as jnp

FLOAT32 = 'float32'
BFLOAT16 = 'bfloat16'
COMPUTE_DTYPES = (FLOAT32, BFLOAT16)


def compute_dtype(name: str) -> jnp.dtype:
  """The jnp dtype of a model's `dtype` field ('float32' or 'bfloat16')."""
  if str(name) not in COMPUTE_DTYPES:
    raise ValueError(f'unknown compute dtype {name!r}; use one of '
                     f'{COMPUTE_DTYPES}')
  return jnp.dtype(str(name))


class ComputeDtypeMixin:
  """For a flax module with a `dtype: str` field: `self.compute_dtype`, the
  jnp dtype its layers compute in (`compute_dtype(self.dtype)`)."""

  @property
  def compute_dtype(self) -> jnp.dtype:
    return compute_dtype(self.dtype)  # the module-level function


def to_float32(x) -> jnp.ndarray:
  """A net's output in float32, where it leaves the net for the losses."""
  return jnp.asarray(x, jnp.float32)
