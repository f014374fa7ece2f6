"""Face models: the 3DMM pytree, its loaders and the embedded procedural model."""

from pnccface.facemodel.morphable import MorphableModel
from pnccface.facemodel.morphable import make_model
from pnccface.facemodel.morphable import normalized_coordinate_code
from pnccface.facemodel.morphable import NUM_LANDMARKS
from pnccface.facemodel.procedural import default_model
from pnccface.facemodel.bfm import load_bfm2009
from pnccface.facemodel.ddfa import load_3ddfa_mean_model
from pnccface.facemodel.ddfa import load_3ddfa_noneck_model
from pnccface.facemodel.ddfa import load_3ddfa_sparse_model
from pnccface.facemodel.ddfa import load_3ddfa_v2_bfm
from pnccface.facemodel.ddfa import read_param_whitening
from pnccface.facemodel.ict import ict_facekit_model
from pnccface.facemodel.loading import FaceFileError
from pnccface.facemodel.params import FaceParams
from pnccface.facemodel.params import read_face_params
