"""The CIFAR-10 code path end to end on the CPU, and a real pretrained CIFAR-10 model through the
protocol.

1. A tiny CIFAR-10 in the real pickle format is served by a local HTTP server and fetched with
   `atbench data download cifar10 --mirror`; `atbench run` then trains and evaluates on it the
   plain-CNN track and a PreActResNet-18 track (crop-flip augmentation, the CIFAR loaders, the
   CIFAR protocols, the Linf and the L2 variants, the boards). The tracks and protocols are the
   shipped ones shrunk by a test-only track file and protocol override (one epoch, a few points,
   a few attack steps). This proves the wiring, not any number.
2. pyautoattack's pretrained (non-robust) CIFAR-10 ResNet-18 is evaluated with `atbench eval
   --model ... --checkpoint ...` under the cifar10-prn18 protocol on 8 of the real CIFAR-10 test
   images foolbox ships (one of each of the 8 classes among them): its clean accuracy equals the
   model's on those images, and nothing survives at 8/255.
"""
from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.commands.cli import main
from tests import fake_datasets as fake
from tests.fake_server import publish

pytestmark = pytest.mark.system

TRACK_FILE = '''
import dataclasses
from benchmark.core.registry import TRACKS

for name in ("cifar10-cnn", "cifar10-prn18"):
    TRACKS.register(dataclasses.replace(TRACKS.get(name), name=f"{name}-ci", epochs=1, batch_size=32,
                                        attack_steps=1, val_attack_steps=1, val_size=8))
'''
TINY_ANALYSIS = '''
[analysis.margins]
adversarial_steps = 2
fab_iterations = 2
input_steps = 2
input_bisections = 2

[analysis.sanity]
probe_points = 8
probe_passes = 2
large_eps_pgd_steps = 2

[analysis.certified]
pgd_steps = 2
'''
TINY_ATTACKS = '''
[[attacks]]
name = "pgd"
steps = 2
seed = 0

[[attacks]]
name = "cw"
steps = 2
seed = 0

[[attacks]]
name = "tpgd"
temperatures = [2.0]
steps = 2
seed = 0
'''


def _protocol(folder: Path, name: str, base: str, n: int, extra: str = "") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'id = "{name}"\nversion = 1\ninclude = ["{base}.toml"]\n{extra}\n'
                    f'[test_subset]\nn = {n}\nseed = 0\n{TINY_ANALYSIS}{TINY_ATTACKS}')
    return path


def _board(boards: Path, protocol: str) -> dict:
    board = json.loads((boards / f"{protocol}.json").read_text())
    assert (boards / f"{protocol}.md").is_file() and (boards / f"{protocol}.png").is_file()
    return board


def test_download_then_run_the_cifar10_tracks_end_to_end(server, monkeypatch, tmp_path):
    """`atbench data download cifar10 --mirror` then `atbench run` on the cifar10-cnn and a
    PreActResNet-18 track, and `atbench eval` under the L2 variant: records and boards appear,
    and each record's points are the protocol's."""
    files = fake.cifar10_files(100, 40, seed=0)
    publish(server, monkeypatch, "cifar10", files, at="mirror")
    data = tmp_path / "data"
    assert main(["data", "download", "cifar10", "--mirror", f"{server.url}/mirror/", "--data-dir", str(data),
                 "-q"]) == 0
    track_file = tmp_path / "ci_tracks.py"
    track_file.write_text(TRACK_FILE)
    cnn = _protocol(tmp_path, "cifar10-cnn-ci", "cifar10-cnn", 20)
    cnn_l2 = _protocol(tmp_path, "cifar10-cnn-ci-l2", "cifar10-cnn-l2", 20)
    prn18 = _protocol(tmp_path, "cifar10-prn18-ci", "cifar10-prn18", 8, 'eps = ["8/255"]\nprimary_eps = "8/255"')
    dirs = ["--data-dir", str(data), "--runs-dir", str(tmp_path / "runs"), "--records-dir",
            str(tmp_path / "records"), "--boards-dir", str(tmp_path / "boards"), "--track-file", str(track_file),
            "-q", "--jobs", "1"]
    assert main(["run", "--track", "cifar10-cnn-ci", "--protocol", str(cnn), "--defense", "pgd-at",
                 "--defense", "crm-liplt", *dirs]) == 0
    assert main(["eval", "--track", "cifar10-cnn-ci", "--protocol", str(cnn_l2), "--defense", "pgd-at",
                 "--defense", "crm-liplt", *dirs]) == 0
    assert main(["run", "--track", "cifar10-prn18-ci", "--protocol", str(prn18), "--defense", "standard", *dirs]) == 0
    for protocol, defenses, norm in (("cifar10-cnn-ci", {"pgd-at", "crm-liplt"}, "Linf"),
                                     ("cifar10-cnn-ci-l2", {"pgd-at", "crm-liplt"}, "L2"),
                                     ("cifar10-prn18-ci", {"standard"}, "Linf")):
        board = _board(tmp_path / "boards", protocol)
        assert {e["defense"] for e in board["entries"]} == defenses and board["protocol"]["norm"] == norm
        for defense in defenses:
            record = json.loads((tmp_path / "records" / protocol / f"{defense}-seed0.json").read_text())
            assert record["track"] in ("cifar10-cnn-ci", "cifar10-prn18-ci") and record["num_classes"] == 10
            assert record["architecture"] == ("preact-resnet18" if defense == "standard" else "cnn-cifar")
            assert (record["certified_l2"] is None) == (defense == "standard")
    crop_flip = json.loads((tmp_path / "runs" / "cifar10-prn18-ci" / "standard" / "seed0" / "train.json").read_text())
    assert crop_flip["epochs"] == 1


def _foolbox_images() -> tuple[np.ndarray, np.ndarray]:
    """The real CIFAR-10 test images foolbox ships (`cifar10_<index>_<label>.png`), uint8 NCHW."""
    from PIL import Image

    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        pytest.skip("foolbox is not installed (pip install --no-deps foolbox: its data files only)")
    folder = Path(spec.submodule_search_locations[0]) / "data"
    paths = sorted(folder.glob("cifar10_*.png"))
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths]).transpose(0, 3, 1, 2)
    return images.astype(np.uint8), np.array([int(p.stem.split("_")[2]) for p in paths])


def _write_real_cifar10(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """A data folder whose CIFAR-10 test batch is the real images (the training batches repeat them:
    an external model is only evaluated)."""
    root = folder / "cifar-10-batches-py"
    root.mkdir(parents=True)
    batch = {b"data": images.reshape(len(images), -1), b"labels": labels.tolist()}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                  "truck")]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))


def test_the_pretrained_resnet18_on_real_cifar10_images(tmp_path, monkeypatch):
    """Clean accuracy through the protocol equals the model's own on the real images; at
    8/255 no point survives (the model is not robust)."""
    images, labels = _foolbox_images()
    examples = Path(importlib.util.find_spec("pyautoattack").submodule_search_locations[0]) / "examples"
    _write_real_cifar10(tmp_path / "data", images, labels)
    (tmp_path / "pretrained.py").write_text(
        "import importlib.util, pathlib\n"
        f"spec = importlib.util.spec_from_file_location('aa_resnet', {str(examples / 'resnet.py')!r})\n"
        "module = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(module)\n\n\n"
        "def build():\n    return module.ResNet18()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    protocol = tmp_path / "cifar10-prn18-real.toml"  # 8 points: one of each of the 8 classes present
    protocol.write_text('id = "cifar10-prn18-real"\nversion = 1\ninclude = ["cifar10-prn18.toml"]\n'
                        'eps = ["8/255"]\nprimary_eps = "8/255"\n[test_subset]\nn = 8\nseed = 0\n' + TINY_ANALYSIS)
    assert main(["eval", "--track", "cifar10-prn18", "--protocol", str(protocol), "--model", "pretrained:build",
                 "--checkpoint", str(examples / "model_test.pt"), "--name", "aa-resnet18", "-q", "--data-dir",
                 str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"), "--records-dir",
                 str(tmp_path / "records"), "--boards-dir", str(tmp_path / "boards")]) == 0
    folder = tmp_path / "records" / "cifar10-prn18-real"
    record = json.loads((folder / "aa-resnet18-seed0.json").read_text())
    chosen = np.load(folder / record["flags"]["file"])["indices"]
    import pretrained

    model = pretrained.build()
    model.load_state_dict(torch.load(examples / "model_test.pt", map_location="cpu", weights_only=True))
    with torch.no_grad():
        own = (model.eval()(torch.tensor(images[chosen]).float() / 255).argmax(1).numpy() == labels[chosen]).mean()
    assert record["clean_acc"] == pytest.approx(own) and own >= 0.8
    assert record["worst_case"]["8/255"] <= 0.05 and record["robust_acc"]["autoattack"]["8/255"] <= 0.05
    print(f"pretrained ResNet-18 on 8 real CIFAR-10 test images: clean {record['clean_acc']:.2f}, "
          f"robust at 8/255: AutoAttack {record['robust_acc']['autoattack']['8/255']:.2f}, "
          f"worst case {record['worst_case']['8/255']:.2f}")
