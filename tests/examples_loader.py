"""Import examples/models.py by path (it is not an installed package)."""
import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "examples" / "models.py"


def load_factory(name):
    spec = importlib.util.spec_from_file_location("_edgepack_examples", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)
