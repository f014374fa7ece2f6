r"""Converts the ICT-FaceKit release to the file the package ships and loads.

  python launch/convert_ict_facekit.py --input=ICT-FaceKit/FaceXModel \
      --output=third_party/ict_facekit/ict_facekit_face.npz

`--input` is the release's model folder: `generic_neutral_mesh.obj`,
`identity000.obj` ... `identity099.obj`, the 53 expression OBJs and
`vertex_indices.json` (OBJs may be xz-compressed). What is kept and changed is
described in `third_party/ict_facekit/README.md` (`pnccface.facemodel.ict`).
"""

from absl import app
from absl import flags

from pnccface.facemodel import ict

_INPUT = flags.DEFINE_string('input', None, "The release's model folder.",
                             required=True)
_OUTPUT = flags.DEFINE_string('output', str(ict.SHIPPED_PATH),
                              'The .npz file to write.')


def main(argv):
  del argv
  print(ict.convert(_INPUT.value, _OUTPUT.value))


if __name__ == '__main__':
  app.run(main)
