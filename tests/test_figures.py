"""Figure helpers: landmark dots (hand-placed pixels)."""

import numpy as np

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
