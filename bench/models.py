"""Bench-sized models (int8 kernels matter at these sizes) and their smoke-sized twins.

Factories return (model, example_inputs) so `edgepack build bench/models.py:cnn` needs no
--input-shape. Seeded weights and batch-norm statistics, as in examples/models.py.
"""
import torch
from torch import nn


class ConvNet(nn.Module):
    """A ResNet-stem-like classifier: strided conv + BN + ReLU stages, global pool, linear head."""

    def __init__(self, widths=(32, 64, 128, 256), classes=1000):
        super().__init__()
        layers, cin = [], 3
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                       nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, classes)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


class Transformer(nn.Module):
    def __init__(self, dim=256, heads=4, layers=4, ff=1024, classes=16):
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=ff, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        return self.head(self.encoder(x).mean(dim=1))


class MLP(nn.Module):
    def __init__(self, din=256, hidden=1024, dout=16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(din, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, dout))

    def forward(self, x):
        return self.net(x)


def _init(model_cls, seed=0, **kwargs):
    # Seed BEFORE construction: nn.MultiheadAttention has no public reset_parameters(), so its
    # projection weights keep whatever the constructor drew (examples/models.py seeds too late).
    torch.manual_seed(seed)
    model = model_cls(**kwargs)
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _x(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def cnn():
    """~1.2 M parameters at 1x3x224x224."""
    return _init(ConvNet), _x(1, 3, 224, 224)


def transformer():
    """4 encoder layers, seq 128, dim 256, 4 heads, ff 1024."""
    return _init(Transformer), _x(1, 128, 256)


def mlp():
    return _init(MLP), _x(1, 256)


def cnn_smoke():
    return _init(ConvNet, widths=(8, 16), classes=10), _x(1, 3, 32, 32)


def transformer_smoke():
    return _init(Transformer, dim=32, heads=2, layers=1, ff=64, classes=4), _x(1, 8, 32)


def mlp_smoke():
    return _init(MLP, din=16, hidden=32, dout=4), _x(1, 16)

