"""The architectures of the paper as plain PyTorch models; `impresslearn.convert` makes them
mask models (their weights are rebuilt from a seed there, so the init here does not matter).

    lenet_300_100   784-300-100-outputs MLP without biases (SupSup's and the paper's MNIST net)
    cifar_resnet18  SupSup's CIFAR ResNet-18: 3x3 stem, no max-pool, configurable width
    resnet50        torchvision's ResNet-50 (ImageNet)
    mnist_convnet   a small conv net for flat 28x28 MNIST inputs (the KSM adaptation experiment)
    mnist_vit       a small vision transformer (torchvision's VisionTransformer: 7x7 patches, 2
                    layers of 4 heads, width 64, MLP 128) for flat 28x28 MNIST inputs; layers
                    conv_proj (the patch embedding), encoder.layers.encoder_layer_<i>.self_attention
                    (an nn.MultiheadAttention: convert() masks its in_proj and out_proj),
                    encoder.layers.encoder_layer_<i>.mlp.0 / .mlp.3, heads.head
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn
import torchvision


def lenet_300_100(num_outputs: int = 10, in_features: int = 784, hidden: tuple[int, int] = (300, 100)) -> nn.Sequential:
    """LeNet-300-100 without biases. `num_outputs=100` gives SupSup's superfluous output neurons."""
    h1, h2 = hidden
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, h1, bias=False),
        nn.ReLU(),
        nn.Linear(h1, h2, bias=False),
        nn.ReLU(),
        nn.Linear(h2, num_outputs, bias=False),
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: 3x3 stem without max-pool, four stages, global pool, linear head."""

    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 100, width: int = 64, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        stages, in_planes = [], width
        for i, n in enumerate(blocks):
            planes = width * 2**i
            layers = []
            for j in range(n):
                layers.append(BasicBlock(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes, bias=False)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(self.pool(out).flatten(1))


def cifar_resnet18(num_classes: int = 100, width: int = 64) -> CifarResNet:
    return CifarResNet((2, 2, 2, 2), num_classes=num_classes, width=width)


def resnet50(num_classes: int = 1000) -> nn.Module:
    """torchvision's ResNet-50, randomly initialised (convert() rebuilds its weights from a seed)."""
    return torchvision.models.resnet50(weights=None, num_classes=num_classes)


def mnist_convnet(num_classes: int = 10, width: tuple[int, int, int] = (16, 32, 64)) -> nn.Sequential:
    """Three 3x3 convolutions (ReLU; 2x2 max-pools after the first two), global average pooling and
    a linear `head`, on flat `[B, 784]` MNIST batches; layers named conv1, conv2, conv3, head.
    Almost every weight is in a convolution, as in the networks kernel-wise masks are made for."""
    c1, c2, c3 = width
    return nn.Sequential(
        OrderedDict(
            [
                ("image", nn.Unflatten(1, (1, 28, 28))),
                ("conv1", nn.Conv2d(1, c1, 3, padding=1)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(c1, c2, 3, padding=1)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.MaxPool2d(2)),
                ("conv3", nn.Conv2d(c2, c3, 3, padding=1)),
                ("relu3", nn.ReLU()),
                ("gap", nn.AdaptiveAvgPool2d(1)),
                ("flat", nn.Flatten()),
                ("head", nn.Linear(c3, num_classes)),
            ]
        )
    )


class MnistViT(torchvision.models.VisionTransformer):
    """torchvision's `VisionTransformer` on flat `[B, 784]` MNIST batches: each 28x28 image is
    given to the patch embedding on its three input channels (`view(-1, 1, 28, 28).expand(-1, 3,
    -1, -1)`), as docs/own-model.md's `Digits` does; its modules keep torchvision's names."""

    def forward(self, x):
        return super().forward(x.reshape(-1, 1, 28, 28).expand(-1, 3, -1, -1))


def mnist_vit(
    num_classes: int = 10,
    *,
    patch_size: int = 7,
    num_layers: int = 2,
    num_heads: int = 4,
    hidden_dim: int = 64,
    mlp_dim: int = 128,
) -> MnistViT:
    """A small ViT for flat `[B, 784]` MNIST batches (16 patches of 7x7 and a class token; no
    dropout). Its linear layers, patch embedding and attention projections are what `convert`
    masks; LayerNorm, class token and position embedding it freezes (docs/design.md §4.5)."""
    return MnistViT(
        image_size=28,
        patch_size=patch_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        mlp_dim=mlp_dim,
        num_classes=num_classes,
    )
