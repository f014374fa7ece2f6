r"""Saves a picture of the default face model: its mean and random samples.

  python launch/face_model_figure.py --output=docs/face_model.png
"""

from absl import app
from absl import flags

from pnccface import facemodel
from pnccface.evaluation import figures

_OUTPUT = flags.DEFINE_string('output', 'docs/face_model.png', 'PNG path.')
_SIZE = flags.DEFINE_integer('size', 256, 'Side of each face image, pixels.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the random faces.')


def main(argv):
  del argv
  figure = figures.face_model_figure(facemodel.default_model(), _SIZE.value,
                                     seed=_SEED.value)
  print(figures.save_png(_OUTPUT.value, figure))


if __name__ == '__main__':
  app.run(main)
