"""The 3D morphable model: an immutable pytree of arrays and its pure functions.

Frames and index bases follow `pnccface.geometry`: model frame (x right, y up,
z towards the viewer), 0-based indices.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

Array = jnp.ndarray

NUM_LANDMARKS = 68


@flax.struct.dataclass
class MorphableModel:
  """A linear 3DMM (shape + expression + albedo) with its mesh and NCC.

  Coefficients are raw: they multiply the bases directly (as in the BFM and
  3DDFA files). Their prior is N(0, std**2) per component, so a network that
  predicts standardised coefficients `z` uses `z * std`.

  Attributes:
    mean_shape: [V, 3] float32, model units (model frame).
    shape_basis: [V, 3, Ks] float32.
    shape_std: [Ks] float32.
    expression_basis: [V, 3, Ke] float32 (Ke may be 0).
    expression_std: [Ke] float32.
    albedo_mean: [V, 3] float32, linear RGB reflectance in [0, 1].
    albedo_basis: [V, 3, Ka] float32 (Ka may be 0).
    albedo_std: [Ka] float32.
    triangles: [T, 3] int32, 0-based, front faces counter-clockwise seen
      from +z (normals point out of the face). T may be 0 for sparse models.
    landmark_indices: [68] int32, vertex indices of the iBUG-68 landmarks.
    ncc: [V, 3] float32 in [0, 1], the normalised coordinate code.
    name: static string identifying the model (kept out of the pytree leaves).
    nonnegative_expressions: static tuple of expression components that only
      make sense with coefficients >= 0 (e.g. jaw open: a negative value
      pushes the lips through each other); samplers draw |z| for them.
  """
  mean_shape: Array
  shape_basis: Array
  shape_std: Array
  expression_basis: Array
  expression_std: Array
  albedo_mean: Array
  albedo_basis: Array
  albedo_std: Array
  triangles: Array
  landmark_indices: Array
  ncc: Array
  name: str = flax.struct.field(pytree_node=False, default='unnamed')
  nonnegative_expressions: tuple[int, ...] = flax.struct.field(
      pytree_node=False, default=())

  def __repr__(self) -> str:
    # A summary, not the arrays: print(model) is how users inspect a model.
    if not all(hasattr(leaf, 'shape') for leaf in jax.tree_util.tree_leaves(
        self)):  # e.g. a tree_map of the model to specs or shapes
      return f'MorphableModel({self.name!r}, leaves={self.__dict__})'
    return (f'MorphableModel({self.name!r}: {self.num_vertices} vertices, '
            f'{self.num_triangles} triangles, {self.num_shape} shape / '
            f'{self.num_expression} expression / {self.num_albedo} albedo '
            'components)')

  @property
  def num_vertices(self) -> int:
    return self.mean_shape.shape[0]

  @property
  def num_triangles(self) -> int:
    return self.triangles.shape[0]

  @property
  def num_shape(self) -> int:
    return self.shape_basis.shape[-1]

  @property
  def num_expression(self) -> int:
    return self.expression_basis.shape[-1]

  @property
  def num_albedo(self) -> int:
    return self.albedo_basis.shape[-1]

  def vertices(self, shape_coeffs=None, expression_coeffs=None) -> Array:
    """Vertices of a face.

    Args:
      shape_coeffs: [..., Ks] raw coefficients, or None for zeros.
      expression_coeffs: [..., Ke] raw coefficients, or None for zeros.

    Returns:
      [..., V, 3] float32 in the model frame; the leading dims broadcast.
    """
    out = self.mean_shape
    if shape_coeffs is not None:
      out = out + jnp.einsum('vck,...k->...vc', self.shape_basis, shape_coeffs)
    if expression_coeffs is not None:
      out = out + jnp.einsum('vck,...k->...vc', self.expression_basis,
                             expression_coeffs)
    return out

  def albedo(self, albedo_coeffs=None) -> Array:
    """Per-vertex reflectance [..., V, 3], clipped to [0, 1]."""
    out = self.albedo_mean
    if albedo_coeffs is not None:
      out = out + jnp.einsum('vck,...k->...vc', self.albedo_basis,
                             albedo_coeffs)
    return jnp.clip(out, 0.0, 1.0)

  def landmarks(self, vertices) -> Array:
    """[..., V, 3] -> [..., 68, 3] landmark vertices."""
    return jnp.take(vertices, self.landmark_indices, axis=-2)

  def validate(self) -> 'MorphableModel':
    """Checks shapes and index ranges; raises ValueError naming the field."""
    num_v = self.mean_shape.shape[0]
    expect = {
        'mean_shape': (num_v, 3),
        'shape_basis': (num_v, 3, None),
        'expression_basis': (num_v, 3, None),
        'albedo_mean': (num_v, 3),
        'albedo_basis': (num_v, 3, None),
        'triangles': (None, 3),
        'landmark_indices': (NUM_LANDMARKS,),
        'ncc': (num_v, 3),
    }
    for field, want in expect.items():
      got = tuple(getattr(self, field).shape)
      if len(got) != len(want) or any(
          w is not None and w != g for w, g in zip(want, got)):
        raise ValueError(
            f'MorphableModel {self.name!r}: {field} has shape {got}, expected '
            f'{tuple("*" if w is None else w for w in want)}')
    for basis, std in (('shape_basis', 'shape_std'),
                       ('expression_basis', 'expression_std'),
                       ('albedo_basis', 'albedo_std')):
      k = getattr(self, basis).shape[-1]
      if tuple(getattr(self, std).shape) != (k,):
        raise ValueError(f'MorphableModel {self.name!r}: {std} has shape '
                         f'{tuple(getattr(self, std).shape)}, expected ({k},)')
    for field in ('triangles', 'landmark_indices'):
      idx = np.asarray(getattr(self, field))
      if idx.size and (idx.min() < 0 or idx.max() >= num_v):
        raise ValueError(
            f'MorphableModel {self.name!r}: {field} indices must lie in '
            f'[0, {num_v}), got [{idx.min()}, {idx.max()}]')
    return self


def normalized_coordinate_code(mean_shape) -> np.ndarray:
  """NCC as 3DDFA defines it: each axis of the mean shape mapped to [0, 1].

  Args:
    mean_shape: [V, 3].

  Returns:
    [V, 3] float32, `(v - min) / (max - min)` per axis.
  """
  mean_shape = np.asarray(mean_shape, np.float64)
  lo, hi = mean_shape.min(axis=0), mean_shape.max(axis=0)
  return ((mean_shape - lo) / np.maximum(hi - lo, 1e-12)).astype(np.float32)


def make_model(*, mean_shape, triangles, landmark_indices, shape_basis=None,
               shape_std=None, expression_basis=None, expression_std=None,
               albedo_mean=None, albedo_basis=None, albedo_std=None, ncc=None,
               name='unnamed', nonnegative_expressions=()) -> MorphableModel:
  """Builds and validates a `MorphableModel`, filling absent parts.

  Missing bases become empty ([V, 3, 0]); missing stds become ones; a missing
  albedo mean becomes a uniform mid-grey; a missing NCC is computed from
  `mean_shape` with `normalized_coordinate_code`.
  """
  mean_shape = np.asarray(mean_shape, np.float32)
  num_v = mean_shape.shape[0]

  def basis(b):
    return (np.zeros((num_v, 3, 0), np.float32) if b is None else
            np.asarray(b, np.float32))

  def std(s, b):
    return (np.ones((b.shape[-1],), np.float32) if s is None else
            np.asarray(s, np.float32).reshape(-1))

  shape_basis, expression_basis, albedo_basis = map(
      basis, (shape_basis, expression_basis, albedo_basis))
  model = MorphableModel(
      mean_shape=jnp.asarray(mean_shape),
      shape_basis=jnp.asarray(shape_basis),
      shape_std=jnp.asarray(std(shape_std, shape_basis)),
      expression_basis=jnp.asarray(expression_basis),
      expression_std=jnp.asarray(std(expression_std, expression_basis)),
      albedo_mean=jnp.asarray(
          np.full((num_v, 3), 0.5, np.float32) if albedo_mean is None else
          np.asarray(albedo_mean, np.float32)),
      albedo_basis=jnp.asarray(albedo_basis),
      albedo_std=jnp.asarray(std(albedo_std, albedo_basis)),
      triangles=jnp.asarray(np.asarray(triangles, np.int32).reshape(-1, 3)),
      landmark_indices=jnp.asarray(np.asarray(landmark_indices, np.int32)),
      ncc=jnp.asarray(
          normalized_coordinate_code(mean_shape) if ncc is None else
          np.asarray(ncc, np.float32)),
      name=name,
      nonnegative_expressions=tuple(int(k) for k in nonnegative_expressions))
  return model.validate()
