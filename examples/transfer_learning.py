"""Transfer learning with Freezer, LRScheduler, Checkpoint and LoadInitState (the talk's ants-vs-bees).

No downloads: the example draws its own image folder (``train/`` and ``val/``, two classes
of striped pictures), "pretrains" a small backbone on a related task, then fine-tunes only
the new head with the backbone frozen, keeps the best checkpoint, and resumes from it.
Run: ``python examples/transfer_learning.py [--smoke] [--output DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from bridge import NeuralNetClassifier
from bridge.callbacks import Checkpoint, Freezer, LoadInitState, LRScheduler
from bridge.helper import predefined_split

CLASSES = ("horizontal", "vertical")
SIZE = 32


def draw_image_folder(root: Path, per_class: int, seed: int = 0) -> None:
    """Write ``root/{train,val}/{class}/*.png``: noisy stripes, horizontal or vertical."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", max(per_class // 2, 4))):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                period = rng.integers(3, 8)
                stripes = (np.arange(SIZE) // period) % 2
                picture = np.tile(stripes, (SIZE, 1)) if label else np.tile(stripes[:, None], (1, SIZE))
                noisy = np.clip(picture * 200 + rng.normal(0, 40, (SIZE, SIZE)), 0, 255)
                rgb = np.stack([noisy] * 3, axis=-1).astype(np.uint8)
                Image.fromarray(rgb).save(folder / f"{index:03d}.png")


class ImageFolder(Dataset):
    """A minimal ImageFolder: ``root/<class>/<image>``, images as normalized (3, H, W) tensors."""

    def __init__(self, root: Path):
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples = [(path, self.class_to_idx[path.parent.name])
                        for path in sorted(root.glob("*/*.png"))]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        image = torch.from_numpy(pixels).permute(2, 0, 1)
        return (image - 0.5) / 0.25, label


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )

    def forward(self, X):
        return self.features(X)


class PretrainedModel(nn.Module):
    """The backbone plus a new two-class head (``model.fc``, as in the talk)."""

    def __init__(self, backbone_state: dict | None = None):
        super().__init__()
        self.backbone = Backbone()
        if backbone_state is not None:
            self.backbone.load_state_dict(backbone_state)
        self.fc = nn.Linear(16 * 4 * 4, 2)

    def forward(self, X):
        return self.fc(self.backbone(X))


def pretrain_backbone(train_ds: Dataset, epochs: int) -> dict:
    """Stand-in for ImageNet weights: train the whole model once, keep the backbone."""
    net = NeuralNetClassifier(PretrainedModel, criterion=nn.CrossEntropyLoss, lr=0.05, classes=[0, 1],
                              batch_size=16, max_epochs=epochs, train_split=None, verbose=0)
    net.fit(train_ds, y=None)
    return {k: v.clone() for k, v in net.module_.backbone.state_dict().items()}


def fine_tune(train_ds, val_ds, backbone_state, dirname: Path, epochs: int, resume: bool):
    checkpoint = Checkpoint(dirname=str(dirname), monitor="valid_acc_best")
    callbacks = [
        ("freezer", Freezer(lambda name: not name.startswith("fc"))),
        ("lr_scheduler", LRScheduler(policy="StepLR", step_size=7, gamma=0.1)),
        ("checkpoint", checkpoint),
    ]
    if resume:
        callbacks.append(("load_state", LoadInitState(checkpoint)))
    net = NeuralNetClassifier(
        PretrainedModel, module__backbone_state=backbone_state, criterion=nn.CrossEntropyLoss,
        classes=[0, 1],
        lr=0.01, batch_size=8, max_epochs=epochs, train_split=predefined_split(val_ds),
        callbacks=callbacks, verbose=0,
    )
    net.fit(train_ds, y=None)
    return net, checkpoint


def main(smoke: bool = False, output: str | None = None) -> dict:
    torch.manual_seed(0)
    root = Path(output or tempfile.mkdtemp())
    draw_image_folder(root / "images", per_class=8 if smoke else 60)
    train_ds = ImageFolder(root / "images" / "train")
    val_ds = ImageFolder(root / "images" / "val")
    print(f"{len(train_ds)} training and {len(val_ds)} validation images; "
          f"classes {train_ds.class_to_idx}")
    backbone_state = pretrain_backbone(train_ds, epochs=1 if smoke else 3)

    epochs = 2 if smoke else 10
    net, _ = fine_tune(train_ds, val_ds, backbone_state, root / "checkpoints", epochs, False)
    frozen = all(torch.equal(net.module_.backbone.state_dict()[k], v)
                 for k, v in backbone_state.items())
    print(f"fine-tuned {len(net.history)} epochs; backbone unchanged: {frozen}; "
          f"lrs {[round(lr, 4) for lr in net.history[:, 'event_lr']]}")
    print("checkpoint files:", sorted(p.name for p in (root / "checkpoints").iterdir()))

    resumed, _ = fine_tune(train_ds, val_ds, backbone_state, root / "checkpoints", epochs, True)
    print(f"resumed from the best checkpoint: history now {len(resumed.history)} epochs")

    # Prediction from the checkpoint alone, as in the talk.
    fresh = NeuralNetClassifier(PretrainedModel, criterion=nn.CrossEntropyLoss, verbose=0)
    fresh.initialize()
    fresh.load_params(checkpoint=Checkpoint(dirname=str(root / "checkpoints"),
                                            monitor="valid_acc_best"))
    predictions = fresh.predict(val_ds)
    labels = np.array([label for _, label in val_ds])
    accuracy = float(np.mean(predictions == labels))
    print(f"validation accuracy from the checkpoint: {accuracy:.3f}")
    return {"frozen": frozen, "accuracy": accuracy, "epochs": len(resumed.history)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="few images and epochs (for CI)")
    parser.add_argument("--output", help="folder for images and checkpoints (default: temp)")
    arguments = parser.parse_args()
    main(arguments.smoke, arguments.output)
