"""Analysis by synthesis: gradient descent through the renderer recovers pose."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pnccface import geometry
from pnccface import render
from pnccface.render import meshes

SIZE = 64


def textured_head():
  """An ellipsoid with a nose bump and a non-uniform albedo (pose visible)."""
  vertices, triangles = meshes.uv_sphere(40, 56)
  x, y, z = vertices.T
  nose = 0.35 * np.exp(-(x**2 + (y + 0.1)**2) / 0.04) * (z > 0)
  vertices = np.stack([0.8 * x, y, 0.7 * z + nose], -1).astype(np.float32)
  albedo = np.stack([0.5 + 0.3 * np.sin(6 * x + phase) * np.cos(5 * y)
                     for phase in (0.0, 1.0, 2.0)], -1).astype(np.float32)
  return vertices, triangles, albedo


def pose_to_screen(pose, vertices):
  """pose [6] = (pitch, yaw, roll rad, log scale, tx / 10, ty / 10 px)."""
  camera = geometry.WeakPerspective(
      geometry.euler_to_rotation(pose[0], pose[1], pose[2]),
      jnp.exp(pose[3]), jnp.stack([10 * pose[4], 10 * pose[5], 0.0]))
  return geometry.weak_perspective_to_screen(vertices, camera, SIZE)


def test_pose_recovered_from_photometric_loss():
  vertices, triangles, albedo = textured_head()
  sh = np.zeros((3, 9), np.float32)
  sh[:, 0] = 0.8
  sh[:, 2] = 0.5  # light from the camera
  sh[:, 3] = 0.2  # and from the right
  background = jnp.full((1, SIZE, SIZE, 3), 0.3)

  def render_pose(pose):
    image, _ = render.render_shaded(pose_to_screen(pose, vertices)[None],
                                    triangles, albedo, sh[None], SIZE, SIZE,
                                    background=background)
    return image

  target_pose = jnp.array([0.1, 0.2, 0.05, np.log(24.0), 3.2, 3.3])
  target = jax.jit(render_pose)(target_pose)
  start = target_pose + jnp.array([0.12, -0.15, 0.1, 0.08, 0.25, -0.2])

  def loss(pose):
    return jnp.mean((render_pose(pose) - target)**2)

  optimizer = optax.adam(0.01)

  @jax.jit
  def step(pose, state):
    value, grad = jax.value_and_grad(loss)(pose)
    updates, state = optimizer.update(grad, state)
    return optax.apply_updates(pose, updates), state, value

  pose, state = start, optimizer.init(start)
  values = []
  for _ in range(150):
    pose, state, value = step(pose, state)
    values.append(float(value))
  initial_error = np.linalg.norm(start - target_pose)
  final_error = np.linalg.norm(pose - target_pose)
  assert values[-1] < 0.05 * values[0]
  assert final_error <= initial_error / 10, (initial_error, final_error, pose)
