"""Face models: the 3DMM pytree, its loaders and the embedded procedural model."""

from pnccface.facemodel.morphable import MorphableModel
from pnccface.facemodel.morphable import make_model
from pnccface.facemodel.morphable import normalized_coordinate_code
from pnccface.facemodel.morphable import NUM_LANDMARKS
from pnccface.facemodel.procedural import default_model
