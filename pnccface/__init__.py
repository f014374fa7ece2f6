"""pnccface: few-shot PNCC transfer learning for self-supervised 3D face reconstruction.

A JAX/Flax reimplementation of Dornier et al., "Improving self-supervised 3D
face reconstruction with few-shot transfer learning" (MIG 2023).
"""

from pnccface import facemodel
from pnccface import geometry

__version__ = '0.1.0'
