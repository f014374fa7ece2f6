"""The embedded procedural face model (placeholder until it lands)."""


def default_model():
  raise NotImplementedError('the embedded face model is being written')
