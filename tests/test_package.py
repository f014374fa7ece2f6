"""The package's module graph: layered, without import cycles."""

import ast
import os
import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'pnccface'


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix('').parts)
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _is_module(name: str) -> bool:
  path = ROOT.joinpath(*name.split('.'))
  return path.with_suffix('.py').is_file() or (path / '__init__.py').is_file()


def import_graph() -> dict[str, set[str]]:
  """module -> the pnccface modules it imports (at any level of the file)."""
  graph = {}
  for path in PACKAGE.rglob('*.py'):
    name = _module_name(path)
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        edges |= {a.name for a in node.names if a.name.startswith('pnccface')}
      elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith(
          'pnccface'):
        for alias in node.names:
          full = f'{node.module}.{alias.name}'
          edges.add(full if _is_module(full) else node.module)
    # A submodule importing its own package's __init__ is not a cycle.
    graph[name] = {e for e in edges if not name.startswith(e + '.')}
  return graph


def find_cycle(graph):
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 'open':
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    state[node] = 'done'
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_finds_a_planted_cycle():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c',
                                                              'a']
  assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_no_import_cycle_in_the_package():
  graph = import_graph()
  assert 'pnccface.stages' in graph and graph['pnccface.api']
  assert find_cycle(graph) is None, find_cycle(graph)


def test_wheel_ships_the_native_kernel_source(tmp_path):
  # pnccface.render.native compiles kernels.cc where it is installed: a
  # non-editable install must carry it.
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
                  '--no-build-isolation', '--wheel-dir', str(tmp_path),
                  str(ROOT)], check=True, timeout=600,
                 env={**os.environ, 'PIP_NO_INDEX': '1'})
  (wheel,) = tmp_path.glob('pnccface-*.whl')
  names = zipfile.ZipFile(wheel).namelist()
  assert 'pnccface/render/native/kernels.cc' in names
  assert 'pnccface/render/native/__init__.py' in names
