"""The paper's Table 1 on AFLW2000-3D: computing it and writing it out.

Units: the three NMEs are stored as fractions (as `metrics` returns them) and
printed in percent (x 100), like the paper's "4.31"; yaw is stored and printed
in degrees.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Callable, Mapping, NamedTuple, Sequence, Union

import numpy as np

from pnccface import distributed
from pnccface.evaluation import metrics

DENSE_2D = 'Dense 2D'
DENSE_3D = 'Dense 3D'
FACE_REC = 'Face Rec.'
YAW = 'Yaw'
METRIC_NAMES = (DENSE_2D, DENSE_3D, FACE_REC, YAW)
# Printed unit of each metric; NMEs are multiplied by 100 for '%'.
METRIC_UNITS = {DENSE_2D: '%', DENSE_3D: '%', FACE_REC: '%', YAW: 'deg'}


class Table1Row(NamedTuple):
  """One method's Table-1 metrics: NMEs as fractions, yaw MAE in degrees."""
  method: str
  dense_2d: float
  dense_3d: float
  face_rec: float
  yaw_degrees: float

  @classmethod
  def from_metrics(cls, method: str, values: Mapping[str, float]):
    """`values` keyed by `METRIC_NAMES` (e.g. `evaluate_method`'s output)."""
    missing = [name for name in METRIC_NAMES if name not in values]
    if missing:
      raise KeyError(f'metrics of {method!r} lack {missing}')
    return cls(method, *(float(values[name]) for name in METRIC_NAMES))

  def metrics(self) -> dict[str, float]:
    """{'Dense 2D', 'Dense 3D', 'Face Rec.' (fractions), 'Yaw' (degrees)}."""
    return dict(zip(METRIC_NAMES, self[1:]))

  def display_values(self) -> tuple[float, ...]:
    """The values as Table 1 prints them: NMEs in %, yaw in degrees."""
    return (100 * self.dense_2d, 100 * self.dense_3d, 100 * self.face_rec,
            self.yaw_degrees)


def _paper_row(method, dense_2d, dense_3d, face_rec, yaw):
  return Table1Row(method, dense_2d / 100, dense_3d / 100, face_rec / 100, yaw)


# Table 1 of Dornier et al. 2023 (AFLW2000-3D), printed there in % NME and
# degrees; stored here in this module's units.
PAPER_TABLE1 = (
    _paper_row('MoFa', 4.31, 5.85, 7.49, 4.97),
    _paper_row('MoFaPNCC_few', 4.20, 5.66, 7.61, 4.95),
    _paper_row('MoFaPNCC_full', 4.12, 5.48, 7.55, 4.66),
)
PAPER_SUFFIX = ' (paper)'

Rows = Union[Sequence[Table1Row], Mapping[str, Mapping[str, float]]]


def _as_rows(rows: Rows) -> list[Table1Row]:
  if isinstance(rows, Mapping):
    return [Table1Row.from_metrics(name, values)
            for name, values in rows.items()]
  return [row if isinstance(row, Table1Row) else Table1Row(*row)
          for row in rows]


# ----------------------------------------------------------------------------
# Computing the metrics of one method.


class FaceGeometry(NamedTuple):
  """Per-sample face geometry of a test set, for prediction or ground truth.

  vertices: [N, V, 3] dense vertices in the image-aligned frame of
    `pnccface.geometry`'s screen space: x, y in image pixels, depth in the
    same pixel units (e.g. `geometry.weak_perspective_to_screen`; a
    perspective prediction must be given an orthographic-equivalent depth in
    pixels). Prediction and gt share the topology (vertex v corresponds).
  yaw_degrees: [N] head yaw (`geometry.rotation_to_euler_degrees`).
  """
  vertices: np.ndarray
  yaw_degrees: np.ndarray


NORMALIZER_BOX = 'box'                # sqrt(w h) of the gt x, y box
NORMALIZER_INTEROCULAR = 'interocular'  # 3D outer-interocular distance


def evaluate_method(pred: FaceGeometry, gt: FaceGeometry, subset=None,
                    chunk_size: int = 64,
                    face_rec_normalizer: str = NORMALIZER_BOX,
                    landmark_indices=None) -> dict[str, float]:
  """Table 1's four metrics of one method over a test set.

  'Dense 2D' = mean_n `metrics.dense_nme_2d`, 'Dense 3D' = mean_n
  `metrics.dense_nme_3d` (depth-centred), 'Face Rec.' = mean_n
  `metrics.reconstruction_nme` (similarity-aligned), all fractions; 'Yaw' =
  `metrics.yaw_mae` in degrees. Samples are processed in chunks of
  `chunk_size` to bound the float64 working memory.

  Args:
    pred, gt: `FaceGeometry` with the same N and V.
    subset: optional vertex subset (boolean [V] or indices), e.g. a neck-free
      face region; see `metrics.select_vertices`.
    chunk_size: samples per chunk.
    face_rec_normalizer: 'box' (the gt x, y box of the evaluated vertices,
      as the dense metrics) or 'interocular' (the 3D distance between the gt
      outer eye corners, PRNet's Face Rec. normaliser).
    landmark_indices: [68] vertex indices of the landmarks (indices into the
      full V, before `subset`); needed for 'interocular'.

  Returns:
    {'Dense 2D', 'Dense 3D', 'Face Rec.', 'Yaw'} -> float.
  """
  pred_vertices = np.asarray(pred.vertices)
  gt_vertices = np.asarray(gt.vertices)
  if pred_vertices.shape != gt_vertices.shape or pred_vertices.ndim != 3:
    raise ValueError(f'pred.vertices {pred_vertices.shape} and gt.vertices '
                     f'{gt_vertices.shape} must both be [N, V, 3]')
  if face_rec_normalizer not in (NORMALIZER_BOX, NORMALIZER_INTEROCULAR):
    raise ValueError(f'unknown face_rec_normalizer {face_rec_normalizer!r}')
  if face_rec_normalizer == NORMALIZER_INTEROCULAR and landmark_indices is None:
    raise ValueError("face_rec_normalizer='interocular' needs the model's "
                     'landmark_indices')
  num_samples = gt_vertices.shape[0]
  per_sample = {DENSE_2D: [], DENSE_3D: [], FACE_REC: []}
  for start in range(0, num_samples, chunk_size):
    gt_chunk = gt_vertices[start:start + chunk_size]
    p = metrics.select_vertices(pred_vertices[start:start + chunk_size],
                                subset)
    g = metrics.select_vertices(gt_chunk, subset)
    normalizer = None
    if face_rec_normalizer == NORMALIZER_INTEROCULAR:
      normalizer = metrics.outer_interocular_distance(
          gt_chunk[:, np.asarray(landmark_indices)])
    per_sample[DENSE_2D].append(metrics.dense_nme_2d(p, g))
    per_sample[DENSE_3D].append(metrics.dense_nme_3d(p, g))
    per_sample[FACE_REC].append(
        metrics.reconstruction_nme(p, g, normalizer=normalizer))
  result = {name: float(np.concatenate(values).mean())
            for name, values in per_sample.items()}
  result[YAW] = metrics.yaw_mae(pred.yaw_degrees, gt.yaw_degrees)
  return result


# ----------------------------------------------------------------------------
# Evaluation protocols: which vertices and which Face Rec. normaliser.


class Protocol(NamedTuple):
  """A Table-1 convention.

  face_region: evaluate on the model's face region (`face_region`) instead
    of every vertex.
  face_rec_normalizer: `evaluate_method`'s 'box' or 'interocular'.
  """
  face_region: bool
  face_rec_normalizer: str


PRNET = 'PRNet'
ALL_VERTICES = 'all vertices'
# PRNet (Feng et al., ECCV 2018, Sec. 4) evaluates dense alignment on the
# face region only (its public uv-data/face_ind.txt masks the position map
# to the face, without neck and ears) with the gt box normaliser, and 3D
# face reconstruction with the error normalised by the outer interocular
# distance of the 3D coordinates.
# Every row of the paper's Table 1 has Face Rec. > Dense 3D, which cannot
# happen with the same vertices and normaliser after a least-squares
# similarity alignment (it can only lower the error); the interocular
# distance is ~0.4x the box size, which explains it. So PRNet's protocol is
# the default; ALL_VERTICES (every vertex, box normaliser) is kept.
PROTOCOLS = {
    PRNET: Protocol(face_region=True,
                    face_rec_normalizer=NORMALIZER_INTEROCULAR),
    ALL_VERTICES: Protocol(face_region=False,
                           face_rec_normalizer=NORMALIZER_BOX),
}
DEFAULT_PROTOCOL = PRNET
# ICT-FaceKit's narrow face area: its first 6706 vertices (toolkit README).
ICT_NARROW_FACE_VERTICES = 6706


def face_region(model) -> np.ndarray | None:
  """[V] bool face-region mask of a `MorphableModel`, or None (all vertices).

  The embedded procedural model has its face mask (`ModelInfo.face_mask`:
  inside the jaw contour, below the upper forehead, in front of the ears,
  like PRNet's face_ind region); ICT-FaceKit's is its narrow face area
  (the first 6706 vertices of the release, ICT-FaceKit README). 3DDFA_V2's `bfm_noneck_v3.pkl` is already
  the neck-free face region, so all its vertices are used; other models
  (a full BFM2009) have no stored region and use all vertices.
  """
  from pnccface.facemodel import ict  # pylint: disable=g-import-not-at-top
  from pnccface.facemodel import procedural  # pylint: disable=g-import-not-at-top
  if model.name == procedural.MODEL_NAME:
    mask = np.asarray(procedural.model_info().face_mask, bool)
    if mask.shape == (model.num_vertices,):
      return mask
  if model.name == ict.MODEL_NAME:
    # The package keeps the release's vertices in order, face first; the
    # toolkit's narrow face area (no ears, no neck) is its first 6706.
    mask = np.zeros(model.num_vertices, bool)
    mask[:ICT_NARROW_FACE_VERTICES] = True
    return mask
  return None


def evaluate_protocols(pred: FaceGeometry, gt: FaceGeometry, model,
                       protocols: Mapping[str, Protocol] | None = None
                       ) -> dict[str, dict[str, float]]:
  """`evaluate_method` under each protocol: {protocol: {metric: value}}.

  Args:
    pred, gt: as `evaluate_method`.
    model: the `MorphableModel` of the vertices (face region, landmarks).
    protocols: name -> `Protocol`; `PROTOCOLS` by default.
  """
  protocols = PROTOCOLS if protocols is None else protocols
  region = face_region(model)
  return {name: evaluate_method(
      pred, gt, subset=region if protocol.face_region else None,
      face_rec_normalizer=protocol.face_rec_normalizer,
      landmark_indices=np.asarray(model.landmark_indices))
          for name, protocol in protocols.items()}


# ----------------------------------------------------------------------------
# Writing the table.


def _header() -> list[str]:
  names = [f'{name} ({METRIC_UNITS[name]})' for name in METRIC_NAMES]
  return ['| Method | ' + ' | '.join(names) + ' |',
          '|---' * (len(names) + 1) + '|']


def _markdown_line(row: Table1Row, suffix: str = '') -> str:
  cells = ['-' if math.isnan(v) else f'{v:.2f}' for v in row.display_values()]
  return f'| {row.method}{suffix} | ' + ' | '.join(cells) + ' |'


def format_markdown(rows: Rows, paper: bool = True, caption: str = '') -> str:
  """A markdown table, methods x metrics, in Table 1's units (%, degrees).

  Args:
    rows: `Table1Row`s, or {method: {metric name: value}}.
    paper: also list the paper's Table 1 rows, marked ' (paper)'.
    caption: a line above the table, e.g. naming the evaluation data.

  Returns:
    The table, one line per method, ending with a newline; lower is better.
  """
  lines = [caption, ''] if caption else []
  lines += _header()
  lines += [_markdown_line(row) for row in _as_rows(rows)]
  if paper:
    lines += [_markdown_line(row, PAPER_SUFFIX) for row in PAPER_TABLE1]
  return '\n'.join(lines) + '\n'


def to_json(rows: Rows, paper: bool = True) -> str:
  """JSON of the rows (stored units: NME fractions, yaw degrees)."""
  payload = {
      'units': {name: ('fraction (x100 = %)' if unit == '%' else 'degrees')
                for name, unit in METRIC_UNITS.items()},
      'rows': [{'method': row.method, **row.metrics()}
               for row in _as_rows(rows)],
  }
  if paper:
    payload['paper'] = [{'method': row.method, **row.metrics()}
                        for row in PAPER_TABLE1]
  return json.dumps(payload, indent=2, allow_nan=True)


def format_protocols(rows_by_protocol: Mapping[str, Rows],
                     caption: str = '') -> str:
  """One markdown table per protocol, `DEFAULT_PROTOCOL` first.

  The paper's rows are listed under the default protocol only (the one the
  paper most likely used, see `PROTOCOLS`). `caption` (e.g. the evaluation
  data) goes above all tables.
  """
  names = sorted(rows_by_protocol, key=lambda n: n != DEFAULT_PROTOCOL)
  sections = [caption + '\n'] if caption else []
  for name in names:
    default = name == DEFAULT_PROTOCOL
    title = PROTOCOL_TITLES.get(name, name)
    sections.append(f'### {title}' + (' (default)' if default else '') +
                    '\n\n' + format_markdown(rows_by_protocol[name],
                                              paper=default))
  return '\n'.join(sections)


PROTOCOL_TITLES = {
    PRNET: 'PRNet protocol: face region; Face Rec. / 3D outer interocular',
    ALL_VERTICES: 'All vertices; every NME / sqrt(w h) of the gt box',
}


def rows_from_json(text: str) -> list[Table1Row]:
  """Inverse of `to_json` for the measured rows."""
  payload = json.loads(text)
  if 'rows' not in payload:
    raise KeyError("Table-1 JSON has no 'rows' key")
  return [Table1Row.from_metrics(entry['method'], entry)
          for entry in payload['rows']]


def write_report(rows: Rows, directory: Union[str, os.PathLike],
                 paper: bool = True, caption: str = ''
                 ) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes `table1.md` and `table1.json` into `directory` (created; by
  process 0 only).

  Returns:
    (markdown path, json path).
  """
  return _write_table_files(
      directory, lambda: format_markdown(rows, paper=paper, caption=caption),
      lambda: to_json(rows, paper=paper))


def _write_table_files(directory: Union[str, os.PathLike],
                       markdown: Callable[[], str], json_text: Callable[[], str]
                       ) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes `table1.md` and `table1.json` (texts built only on process 0)."""
  directory = pathlib.Path(directory)
  markdown_path = directory / 'table1.md'
  json_path = directory / 'table1.json'
  if distributed.is_main_process():  # one writer on a multi-host job
    directory.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(markdown())
    json_path.write_text(json_text())
  return markdown_path, json_path


def write_protocol_report(rows_by_protocol: Mapping[str, Rows],
                          directory: Union[str, os.PathLike],
                          caption: str = ''
                          ) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes `table1.md` (`format_protocols`) and `table1.json`.

  The JSON's 'rows' are the `DEFAULT_PROTOCOL`'s (what `read_report`
  returns); 'protocols' maps every protocol to its rows. Process 0 only
  writes.
  """
  if DEFAULT_PROTOCOL not in rows_by_protocol:
    raise KeyError(f'no rows for the default protocol {DEFAULT_PROTOCOL!r}')

  def json_text() -> str:
    payload = json.loads(to_json(rows_by_protocol[DEFAULT_PROTOCOL]))
    payload['protocol'] = DEFAULT_PROTOCOL
    payload['protocols'] = {
        name: [{'method': row.method, **row.metrics()}
               for row in _as_rows(rows)]
        for name, rows in rows_by_protocol.items()}
    return json.dumps(payload, indent=2, allow_nan=True)

  return _write_table_files(
      directory, lambda: format_protocols(rows_by_protocol, caption),
      json_text)


def read_report(directory: Union[str, os.PathLike]) -> list[Table1Row]:
  """Reads the measured rows back from `directory/table1.json`."""
  path = pathlib.Path(directory) / 'table1.json'
  if not path.is_file():
    raise FileNotFoundError(f'no Table-1 report at {path}')
  return rows_from_json(path.read_text())
