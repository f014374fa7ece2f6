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
from typing import Mapping, NamedTuple, Sequence, Union

import numpy as np

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


def evaluate_method(pred: FaceGeometry, gt: FaceGeometry, subset=None,
                    chunk_size: int = 64) -> dict[str, float]:
  """Table 1's four metrics of one method over a test set.

  'Dense 2D' = mean_n `metrics.dense_nme_2d`, 'Dense 3D' = mean_n
  `metrics.dense_nme_3d` (depth-centred), 'Face Rec.' = mean_n
  `metrics.reconstruction_nme` (similarity-aligned, gt box normaliser), all
  fractions; 'Yaw' = `metrics.yaw_mae` in degrees. Samples are processed in
  chunks of `chunk_size` to bound the float64 working memory.

  Args:
    pred, gt: `FaceGeometry` with the same N and V.
    subset: optional vertex subset (boolean [V] or indices), e.g. a neck-free
      face region; see `metrics.select_vertices`.
    chunk_size: samples per chunk.

  Returns:
    {'Dense 2D', 'Dense 3D', 'Face Rec.', 'Yaw'} -> float.
  """
  pred_vertices = np.asarray(pred.vertices)
  gt_vertices = np.asarray(gt.vertices)
  if pred_vertices.shape != gt_vertices.shape or pred_vertices.ndim != 3:
    raise ValueError(f'pred.vertices {pred_vertices.shape} and gt.vertices '
                     f'{gt_vertices.shape} must both be [N, V, 3]')
  num_samples = gt_vertices.shape[0]
  per_sample = {DENSE_2D: [], DENSE_3D: [], FACE_REC: []}
  for start in range(0, num_samples, chunk_size):
    p = metrics.select_vertices(pred_vertices[start:start + chunk_size],
                                subset)
    g = metrics.select_vertices(gt_vertices[start:start + chunk_size], subset)
    per_sample[DENSE_2D].append(metrics.dense_nme_2d(p, g))
    per_sample[DENSE_3D].append(metrics.dense_nme_3d(p, g))
    per_sample[FACE_REC].append(metrics.reconstruction_nme(p, g))
  result = {name: float(np.concatenate(values).mean())
            for name, values in per_sample.items()}
  result[YAW] = metrics.yaw_mae(pred.yaw_degrees, gt.yaw_degrees)
  return result


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
  """Writes `table1.md` and `table1.json` into `directory` (created).

  Returns:
    (markdown path, json path).
  """
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  markdown_path = directory / 'table1.md'
  json_path = directory / 'table1.json'
  markdown_path.write_text(format_markdown(rows, paper=paper, caption=caption))
  json_path.write_text(to_json(rows, paper=paper))
  return markdown_path, json_path


def read_report(directory: Union[str, os.PathLike]) -> list[Table1Row]:
  """Reads the measured rows back from `directory/table1.json`."""
  path = pathlib.Path(directory) / 'table1.json'
  if not path.is_file():
    raise FileNotFoundError(f'no Table-1 report at {path}')
  return rows_from_json(path.read_text())
