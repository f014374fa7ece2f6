"""Figure helpers: landmark dots (hand-placed pixels)."""

import numpy as np
import pytest

from pnccface.evaluation import figures


def test_draw_points_marks_the_pixel_that_holds_each_point():
  image = np.zeros((8, 10, 3), np.float32)
  # (x, y) = (2.9, 5.1) lies in pixel row 5, column 2; (9.5, 0.2) in the
  # top-right pixel; (-1, 3) and (10.0, 2) are outside and skipped.
  out = figures.draw_points(image, [[2.9, 5.1], [9.5, 0.2], [-1, 3], [10.0, 2]],
                            colour=(1.0, 0.0, 0.5), radius=0)
  marked = np.argwhere(out[..., 0] > 0).tolist()
  assert marked == [[0, 9], [5, 2]]
  np.testing.assert_array_equal(out[5, 2], [1.0, 0.0, 0.5])
  assert image.max() == 0  # the input is left alone
  square = figures.draw_points(image, [[4.5, 4.5]], radius=1)
  assert (square[..., 1] > 0).sum() == 9
  assert square[3:6, 3:6, 1].min() > 0


def test_draw_label_lights_the_glyph_cells():
  image = np.full((20, 40, 3), 0.5, np.float32)
  # '8' has 13 lit cells of its 3 x 5, '1' has 8: at scale 2, 4 px a cell.
  out = figures.draw_label(image, '81', scale=2, colour=(1.0, 0.0, 0.0))
  assert (out[..., 0] == 1).sum() == 4 * (13 + 8)
  # The box: 7 cells high, 4 per character + 1 wide; the rest untouched.
  assert (out[:14, :18, 1] == 0).all() and (out[14:, :, 1] == 0.5).all()
  assert (out[:, 18:, 1] == 0.5).all()
  assert out[0, 0, 0] == 0  # padding is background
  minus = figures.draw_label(image, '-', scale=1)
  assert np.argwhere(minus[..., 0] == 1).tolist() == [[3, 1], [3, 2], [3, 3]]
  with pytest.raises(ValueError, match='glyph'):
    figures.draw_label(image, 'yaw')
