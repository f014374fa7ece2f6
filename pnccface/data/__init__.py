"""Datasets and input pipelines.

Importing this package registers the project's TFDS builders
(`synthetic_faces`, `aflw2000_3d`).
"""

from pnccface.data import aflw2000_3d
from pnccface.data import synthetic_faces
