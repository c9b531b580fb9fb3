"""Built-in example models for the quick start and the tests. Deterministic weights (seeded)."""
import torch
from torch import nn


class TinyCNN(nn.Module):
    """A small image classifier: conv + batch norm + ReLU blocks, global pool, linear head."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        )
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        x = self.features(x)
        return self.head(x.mean(dim=(2, 3)))


class TinyTransformer(nn.Module):
    """Two encoder layers over a float sequence (batch, seq, dim) with a classification head."""

    def __init__(self, dim: int = 64, heads: int = 4, layers: int = 2, classes: int = 8):
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=128, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        return self.head(self.encoder(x).mean(dim=1))


class MLP(nn.Module):
    def __init__(self, din: int = 32, hidden: int = 64, dout: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(din, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, dout))

    def forward(self, x):
        return self.net(x)


def _init(make, seed: int) -> nn.Module:
    """Build with a fixed seed BEFORE construction (nn.MultiheadAttention initialises its
    weights in __init__ and has no public reset_parameters), so every call gives the same model."""
    torch.manual_seed(seed)
    model = make()
    # Non-trivial batch-norm statistics, as a trained model would have.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def tiny_cnn():
    """Factory: returns (model, example_inputs) so no --input-shape is needed."""
    return _init(TinyCNN, 0), torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def tiny_cnn_module():
    """Factory returning only the module: needs --input-shape x=1x3x32x32."""
    return _init(TinyCNN, 0)


def tiny_transformer():
    return _init(TinyTransformer, 0), torch.randn(1, 16, 64, generator=torch.Generator().manual_seed(1))


def mlp():
    return _init(MLP, 0), torch.randn(1, 32, generator=torch.Generator().manual_seed(1))
