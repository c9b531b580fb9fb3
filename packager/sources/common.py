"""Helpers every source loader shares: names, --input-shape, torch outputs."""
from __future__ import annotations

import numpy as np

from ..errors import SourceError
from ..specs import TensorSpec, guess_layout


def clean_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_." else "_" for c in text).strip("._")
    return cleaned or "model"


def apply_shapes(inputs: list[TensorSpec], shapes: dict[str, list[int]], where: str) -> list[TensorSpec]:
    """The specs with --input-shape sizes as their reference shapes (symbolic dims stay symbolic)."""
    known = [s.name for s in inputs]
    for name in shapes:
        if name not in known:
            raise SourceError(f"--input-shape names '{name}', but {where} has inputs {known}",
                              "use the model's input names")
    out = []
    for spec in inputs:
        if spec.name not in shapes:
            out.append(spec)
            continue
        given = shapes[spec.name]
        if spec.shape and len(given) != len(spec.shape):
            raise SourceError(f"--input-shape {spec.name} has {len(given)} dims, the model's input has "
                              f"{len(spec.shape)} ({spec.shape})", "give one size per dimension")
        for i, (g, d) in enumerate(zip(given, spec.shape)):
            if isinstance(d, int) and d != g:
                raise SourceError(f"--input-shape {spec.name} sets axis {i} to {g}, the model fixes it "
                                  f"at {d} (shape {spec.shape})", "match the model's fixed sizes")
        out.append(spec.replace(shape=list(spec.shape) or list(given), layout=spec.layout or guess_layout(given),
                                example_shape=list(given)))
    return out


def specs_from_data(names: list[str], shapes: dict[str, list[int]], data: dict | None, where: str
                    ) -> list[TensorSpec]:
    """Specs for a source that records neither shapes nor dtypes (a factory without an example,
    TorchScript): the shape from --input-shape, else from the --inputs array (axis 0 = samples,
    each row one batch element: (N, 32) -> [1, 32]); the dtype from the --inputs array, else float32."""
    data = data or {}
    specs = []
    for n in names:
        if n in shapes:
            shape = list(shapes[n])
        elif n in data:
            shape = [1, *data[n][0][1:]]
        else:
            raise SourceError(f"{where} does not record the shape of input '{n}' (inputs {names})",
                              f"pass --inputs FILE.npz with an array '{n}', or --input-shape {n}=...")
        dtype = data[n][1] if n in data else "float32"
        specs.append(TensorSpec(n, dtype, shape, guess_layout(shape), example_shape=shape))
    return specs


def shapes_note(names: list[str], shapes: dict, data: dict | None) -> str:
    """Where the input shapes came from, for the manifest and the reference-run error."""
    from_data = [n for n in names if n not in shapes and n in (data or {})]
    if not from_data:
        return ""
    return ("shapes from --inputs (each array row one batch element, batch axis 0): "
            + ", ".join(f"{n} {[1, *data[n][0][1:]]}" for n in from_data))


def torch_outputs(out) -> dict[str, np.ndarray]:
    import torch

    if isinstance(out, torch.Tensor):
        return {"output": out.detach().cpu().numpy()}
    if isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in out):
        if len(out) == 1:
            return {"output": out[0].detach().cpu().numpy()}
        return {f"output_{i}": o.detach().cpu().numpy() for i, o in enumerate(out)}
    if isinstance(out, dict) and all(isinstance(o, torch.Tensor) for o in out.values()):
        return {str(k): v.detach().cpu().numpy() for k, v in out.items()}
    raise SourceError(f"the model returned {type(out).__name__}; edgepack handles a tensor, a tuple "
                      "of tensors or a dict of tensors", "return tensors from forward()")


def torch_args(feeds: dict, names: list[str], scalars: dict[str, str] | None = None) -> list:
    """forward()'s arguments: tensors, and Python numbers for the parameters TorchScript types as
    int / float / bool (`scalars`: name -> type), given as 0-d arrays."""
    import torch

    py = {"int": int, "float": float, "bool": bool}
    args = []
    for n in names:
        if scalars and n in scalars:
            args.append(py[scalars[n]](np.asarray(feeds[n]).item()))
        else:
            args.append(torch.from_numpy(np.asarray(feeds[n], order="C")))
    return args


def torch_runner(module, names: list[str], scalars: dict[str, str] | None = None):
    """feeds -> outputs through a torch module, without autograd."""
    import torch

    def runner(feeds):
        args = torch_args(feeds, names, scalars)
        with torch.no_grad():
            out = module(*args)
        return torch_outputs(out)

    return runner


def require_torch():
    try:
        import torch
    except ImportError as exc:
        raise SourceError("this source needs PyTorch, which is not installed",
                          "install it: pip install torch==2.13.0") from exc
    return torch
