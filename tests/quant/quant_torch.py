"""PyTorch factories for the quantization tests (SOURCE = tests/quant/quant_torch.py:NAME)."""
from __future__ import annotations

import torch
from torch import nn


class SensitiveConvNet(nn.Module):
    """The torch twin of quant_models.sensitive_convnet: conv2 holds a weight of 50 on an input
    channel that is always 0, which ruins its per-channel int8 scale; only conv2 in float fixes it."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.conv3 = nn.Conv2d(c, 4, 1, bias=False)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for conv, std in ((self.conv1, 0.3), (self.conv2, 0.1), (self.conv3, 0.3)):
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * std)
                if conv.bias is not None:
                    conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.1)
            self.conv1.weight[0] = 0.0
            self.conv1.bias[0] = -100.0          # relu(conv1)[:, 0] == 0
            self.conv2.weight[:, 0, 1, 1] = 50.0  # the planted outlier

    def forward(self, x):
        return self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x)))))


def sensitive_convnet():
    return SensitiveConvNet().eval(), (torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)),)


class MixedRangeHead(nn.Module):
    """A detector-shaped toy: a conv backbone, then one output (1, 4+2, anchors) that joins box rows
    in pixels (0..320) and class-score rows in [0, 1] with a final Concat, as YOLOv8's head does.
    Under one int8 scale the scores collapse; with the Concat in float (a one-op float tail) they hold."""

    def __init__(self, c: int = 8, depth: int = 12):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(depth))
        self.boxes = nn.Conv2d(c, 4, 1)
        self.scores = nn.Conv2d(c, 2, 1)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for conv in [self.stem, *self.body, self.boxes, self.scores]:
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (0.5 / conv.weight[0].numel() ** 0.5))
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.1)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        for conv in self.body:
            h = h + torch.relu(conv(h))
        boxes = torch.sigmoid(self.boxes(h)).flatten(2) * 320.0
        scores = torch.sigmoid(self.scores(h)).flatten(2)
        return torch.cat([boxes, scores], dim=1)


def mixed_range_head():
    return MixedRangeHead().eval(), (torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)),)
