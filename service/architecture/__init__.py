"""A spec → a validated architecture: the spec's layers as a DAG, every shape known.

One module per concern:

- `schema.py`: the spec's top level as marshmallow schemas;
- `preprocessing.py`: `input.preprocess`, its vocabulary and defaults, and the full pipeline
  `image_preprocess` describes (which `service.imaging` runs);
- `builder.py`: spec → `Node`s, every problem collected into one `SpecError`; `Limits`;
- `graph.py`: `Architecture`, the validated DAG (facts, layer table, weights);
- `weight_checks.py`: weights against what the architecture expects (`WeightsError`);
- `random_init.py`: random weights to try a model before it is trained.

Of the project it imports only the catalogue, the kernels (softmax) and the errors: nothing of
Flask or SQLAlchemy.
"""

from .builder import Limits, Node
from .graph import FLOAT_BYTES, Architecture
from .preprocessing import image_preprocess
from .schema import SpecSchema

__all__ = ["FLOAT_BYTES", "Architecture", "Limits", "Node", "SpecSchema", "image_preprocess"]
