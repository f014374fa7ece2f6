"""Input checks of pnccface.api (no trained model needed)."""

import numpy as np
import pytest

from pnccface import api
from pnccface import workdirs
from pnccface.data import crop
from configs import autoencoder as autoencoder_config
from configs import mofa as mofa_config


def test_uint8_and_both_float_scales_agree():
  rng = np.random.default_rng(0)
  photo = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
  expected = photo[None].astype(np.float32) / 255
  np.testing.assert_allclose(api.as_float_images(photo), expected)
  np.testing.assert_allclose(api.as_float_images(expected), expected)
  # crop_image's own output of a uint8 photo: float in 0..255.
  cropped = crop.crop_image(photo, crop.CropBox(0.0, 0.0, 40.0), 40)
  assert cropped.max() > 1
  np.testing.assert_allclose(api.as_float_images(cropped), expected,
                             atol=1e-5)
  # A list of equal-sized images is a batch.
  assert api.as_float_images([photo, photo]).shape == (2, 40, 40, 3)


@pytest.mark.parametrize('images, error', [
    (np.full((2, 8, 8, 3), np.nan, np.float32), r'images\[0\] has NaN'),
    (np.zeros((0, 8, 8, 3), np.uint8), 'empty'),
    ([np.zeros((8, 8, 3)), np.zeros((9, 9, 3))],
     r'images\[1\] has shape \(9, 9, 3\)'),
    (np.full((1, 8, 8, 3), 300.0), r'\[0, 255\]'),
    (np.full((1, 8, 8, 3), -0.5), r'\[0, 255\]'),
    (np.zeros((1, 8, 6, 3)), 'square'),
    (np.zeros((1, 8, 8, 2)), r'\[N, H, W, 3\]'),
])
def test_bad_images_name_what_is_wrong(images, error):
  with pytest.raises(ValueError, match=error):
    api.as_float_images(images)


def test_wrong_stage_workdir_is_named(tmp_path):
  workdirs.write_config(autoencoder_config.get_config('tiny'), tmp_path)
  with pytest.raises(ValueError, match='autoencoder workdir, not a pncc'):
    api.load_pncc_predictor(tmp_path)
  with pytest.raises(ValueError, match='autoencoder workdir, not a mofa'):
    api.load_reconstructor(tmp_path)


def test_plain_mofa_refuses_a_pncc():
  reconstructor = api.Reconstructor(mofa_config.get_config('tiny'), None,
                                    None, None, None)
  images = np.zeros((1, 64, 64, 3), np.uint8)
  with pytest.raises(ValueError, match='plain MoFa'):
    reconstructor.reconstruct(images, pncc=images)
