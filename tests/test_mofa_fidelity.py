"""MoFa's published loss definitions and model truncation (Tewari et al. 2017)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from pnccface import facemodel
from pnccface.data import synthesis
from pnccface.models import mofa
from pnccface.train import mofa as train_mofa
from configs import mofa as mofa_config
from tests.conftest import tiny_face_model, true_face_code

SIZE = 64  # px, as test_mofa.py


def test_config_keeps_mofas_prior_ratios_and_l21():
  loss = mofa_config.get_config().loss
  assert loss.w_albedo / loss.w_shape == pytest.approx(1.7e-3)
  assert loss.w_expression / loss.w_shape == pytest.approx(0.8)
  assert loss.photo_norm == 'l21'
  components = mofa_config.get_config().face_model_components
  assert components.to_dict() == dict(num_shape=80, num_expression=-1,
                                      num_albedo=80)


def test_truncate_face_model_keeps_the_first_components():
  model = facemodel.procedural_model()  # 60 shape, 16 expression, 60 albedo
  small = mofa.truncate_face_model(model, 10, 5, 7)
  assert (small.num_shape, small.num_expression, small.num_albedo) == (
      10, 5, 7)
  assert small.shape_std.shape == (10,) and small.albedo_std.shape == (7,)
  assert all(k < 5 for k in small.nonnegative_expressions)
  coeffs = np.random.default_rng(0).normal(size=10).astype(np.float32)
  padded = np.concatenate([coeffs, np.zeros(50, np.float32)])
  np.testing.assert_allclose(small.vertices(coeffs),
                             model.vertices(padded), atol=1e-4)
  # -1 or more than the model has keeps everything; idempotent.
  same = mofa.truncate_face_model(model, -1, 99, -1)
  assert (same.num_shape, same.num_expression, same.num_albedo) == (
      60, 16, 60)
  assert mofa.truncate_face_model(small, 10, 5, 7).num_shape == 10
  config = ml_collections.ConfigDict(dict(num_shape=8))
  assert mofa.truncate_face_model(model, **config).num_shape == 8
  assert mofa.truncate_face_model(model, **config).num_albedo == 60


def test_photometric_distance_hand_computed():
  residual = jnp.array([[0.3, 0.4, 0.0], [0.0, 0.0, 0.0]])
  np.testing.assert_allclose(
      train_mofa.photometric_distance(residual, 'l21'), [0.5, 1e-4],
      rtol=1e-5)  # MoFa's l2,1: the norm itself (sqrt(0 + 1e-8) at 0)
  np.testing.assert_allclose(
      train_mofa.photometric_distance(residual, 'l2'), [0.25, 0.0],
      rtol=1e-6)


def test_visible_vertices_hand_computed():
  triangles = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6]])
  triangle_id = np.array([[[0, -1], [0, 2]]])  # triangle 1 is hidden
  visible = train_mofa.visible_vertices(triangle_id, triangles, 8)
  np.testing.assert_array_equal(visible, [[1, 1, 1, 0, 1, 1, 1, 0]])


def test_sample_image_at_pixel_centres_and_between():
  image = jnp.arange(12, dtype=jnp.float32).reshape(1, 3, 4, 1)
  # Pixel (row 1, col 2) is centred at (x, y) = (2.5, 1.5): value 6; half
  # way to (3.5, 1.5) (value 7) gives 6.5; between rows 0 and 1: 4.
  points = jnp.array([[[2.5, 1.5], [3.0, 1.5], [0.5, 1.0]]])
  np.testing.assert_allclose(train_mofa.sample_image(image, points)[0, :, 0],
                             [6.0, 6.5, 2.0])


def test_vertex_photometric_term_hand_computed():
  """A screen-facing square (2 triangles) over a flat image: every visible
  vertex contributes ||g - c||; a triangle off-image contributes nothing."""
  vertices = jnp.array([[[2., 2., 0.], [6., 2., 0.], [6., 6., 0.],
                         [2., 6., 0.], [20., 20., 0.], [22., 20., 0.],
                         [20., 22., 0.]]])
  triangles = jnp.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
  colours = jnp.broadcast_to(jnp.array([0.2, 0.5, 0.1]), (1, 7, 3))
  image = jnp.broadcast_to(jnp.array([0.5, 0.1, 0.1]), (1, 8, 8, 3))
  total, count = train_mofa.vertex_photometric_terms(
      vertices, triangles, colours, image, 'l21')
  assert float(count) == 4.0
  np.testing.assert_allclose(float(total), 4 * 0.5, rtol=1e-4)  # |(.3,-.4,0)|
  total, _ = train_mofa.vertex_photometric_terms(vertices, triangles,
                                                 colours, image, 'l2')
  np.testing.assert_allclose(float(total), 4 * 0.25, rtol=1e-5)


def test_vertex_photometric_term_is_small_for_thetrue_face_code():
  face_model = tiny_face_model()
  rng = np.random.default_rng(3)
  params = synthesis.sample_face_params(rng, face_model, 2, SIZE)
  background = jnp.asarray(synthesis.random_backgrounds(rng, 2, SIZE, SIZE))
  faces = synthesis.render_faces(face_model, params, background, SIZE)
  code = true_face_code(face_model, params, SIZE)
  batch = {'image': faces.image, 'landmarks_2d': faces.landmarks_2d,
           'landmark_weights': jnp.ones((2, 68))}
  loss_config = ml_collections.ConfigDict(dict(
      photo_norm='l21', photo_domain='vertex', w_photo=1.0, w_landmark=0.0,
      w_shape=0.0, w_expression=0.0, w_albedo=0.0))

  @jax.jit
  def photometric(code):
    recon = mofa.decode(code, face_model, background)
    return train_mofa.mofa_loss(recon, code, batch, loss_config,
                                face_model=face_model)[1]['photometric']

  true = float(photometric(code))
  wrong = float(photometric(code._replace(sh=code.sh * 1.3)))
  # The image at the true vertices is their shaded colour up to bilinear
  # blending (median 0.018), silhouette vertices blending with the
  # background and the image's clipping to [0, 1] (measured 0.072 mean);
  # 30% more light gives 0.39.
  assert true < 0.1 and wrong > 4 * true, (true, wrong)
  with pytest.raises(ValueError, match='face_model'):
    train_mofa.mofa_loss(mofa.decode(code, face_model, background), code,
                         batch, loss_config)
