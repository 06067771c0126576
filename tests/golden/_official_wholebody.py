"""Runs the OFFICIAL AlphaPose code on one whole-body config; a child process of gen_wholebody.py.

Imports only the official package (at commit c60106d, put first on sys.path) and never this project's
``alphapose`` (the two share the name). What runs is official code: the network class built from the
config by the official registry, ``SimpleTransform.test_transform`` for the crops, ``flip`` and
``flip_heatmap`` and the demo's averaging for the flip test (scripts/demo_inference.py), and
``DataWriter.update`` (alphapose/utils/writer.py) for the decoding by loss type and ``pose_nms``.

Stubs, and why:
- the ``alphapose``, ``alphapose.models``, ``alphapose.datasets`` and ``alphapose.utils.presets`` package
  ``__init__`` files are skipped (they import a generated version file, every network, every dataset
  and the SMPL transform); the submodules used are the official files;
- ``alphapose.models.layers.dcn`` (a compiled CUDA/C++ extension) is replaced by a DeformConv with the
  same parameter and the same DCN v1 sampling, through ``torchvision.ops.deform_conv2d``;
- ``alphapose.utils.roi_align`` (compiled; unused by ``test_transform``) and ``pycocotools`` (unused
  for the joint pairs) are empty stand-ins;
- ``torchvision.models.resnetNN(pretrained=True)`` (an ImageNet download, overwritten by the
  checkpoint) builds the network without weights;
- the flip shift: the official ``flip_heatmap`` shifts the map one column right in place between
  overlapping views, which current PyTorch computes by propagating the first column; the runner calls
  it with ``shift=False`` and applies that same one-column shift from a copy.

Output: one npz with the network outputs (and those of the same network in float64, for the condition
of the draw: tests/golden/conditioning.py), the decoded keypoints and scores handed to pose NMS, and the
persons pose NMS kept (pick ids, merged keypoints and scores, proposal scores). With ``--keys``, instead:
the state_dict key and shape digest of the official network of each config given.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib
import json
import sys
import tempfile
import types
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from torch import nn


class AttrDict(dict):
    """The attribute access the official code expects from its EasyDict configs."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _attr(value):
    if isinstance(value, dict):
        return AttrDict({k: _attr(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_attr(v) for v in value]
    return value


def _package(name: str, path: Path) -> None:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    sys.modules[name] = module


def _install_stubs(official: Path) -> None:
    root = official / "alphapose"
    _package("alphapose", root)
    _package("alphapose.models", root / "models")
    _package("alphapose.datasets", root / "datasets")
    _package("alphapose.utils.presets", root / "utils" / "presets")

    from torchvision.ops import deform_conv2d

    class DeformConv(nn.Module):
        def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                     groups=1, deformable_groups=1, bias=False):  # fmt: skip
            super().__init__()
            assert groups == 1 and deformable_groups == 1 and not bias
            self.stride, self.padding, self.dilation = (
                (stride, stride),
                (padding, padding),
                (dilation, dilation),
            )
            self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))

        def forward(self, x, offset):
            return deform_conv2d(x, offset, self.weight, None, self.stride, self.padding, self.dilation)

    dcn = types.ModuleType("alphapose.models.layers.dcn")
    dcn.DeformConv = DeformConv
    dcn.ModulatedDeformConv = None
    sys.modules["alphapose.models.layers.dcn"] = dcn
    roi_align = types.ModuleType("alphapose.utils.roi_align")
    roi_align.RoIAlign = None
    sys.modules["alphapose.utils.roi_align"] = roi_align
    coco = types.ModuleType("pycocotools.coco")
    coco.COCO = None
    sys.modules["pycocotools"] = types.ModuleType("pycocotools")
    sys.modules["pycocotools.coco"] = coco

    import torchvision.models as tm

    for depth in (18, 34, 50, 101, 152):
        builder = getattr(tm, f"resnet{depth}")
        setattr(tm, f"resnet{depth}", lambda pretrained=False, _b=builder, **kw: _b(weights=None, **kw))

    presets = sys.modules["alphapose.utils.presets"]
    presets.SimpleTransform = importlib.import_module(
        "alphapose.utils.presets.simple_transform"
    ).SimpleTransform


def _recording_nms(official_nms, captured: dict):
    """The official pose_nms, recording what the writer hands it (before it edits the scores in place)."""

    def recording_nms(bboxes, bbox_scores, bbox_ids, pose_preds, pose_scores, *args, **kwargs):
        captured["keypoints"] = pose_preds.clone().numpy()
        captured["scores"] = pose_scores.clone().numpy()[..., 0]
        captured["use_heatmap_loss"] = kwargs.get("use_heatmap_loss")
        captured["result"] = official_nms(
            bboxes, bbox_scores, bbox_ids, pose_preds, pose_scores, *args, **kwargs
        )
        return captured["result"]

    return recording_nms


def run(official: Path, config: Path, checkpoint: Path, image: Path, boxes: np.ndarray, out: Path) -> None:
    sys.path.insert(0, str(official))
    _install_stubs(official)
    from alphapose.models import builder
    from alphapose.utils import writer as writer_module
    from alphapose.utils.presets.simple_transform import SimpleTransform
    from alphapose.utils.transforms import flip, flip_heatmap

    cfg = _attr(yaml.safe_load(config.read_text()))
    importlib.import_module("alphapose.models.fastpose")
    pose_model = builder.build_sppe(cfg.MODEL, preset_cfg=cfg.DATA_PRESET)
    pose_model.load_state_dict(torch.load(checkpoint, map_location="cpu"))
    pose_model.eval()
    # The skipped package __init__ would bind each dataset class to alphapose.datasets; bind the one used.
    dataset = cfg.DATASET.TRAIN.TYPE
    module = importlib.import_module(f"alphapose.datasets.{dataset.lower()}")
    setattr(sys.modules["alphapose.datasets"], dataset, getattr(module, dataset))
    joint_pairs = builder.retrieve_dataset(cfg.DATASET.TRAIN).joint_pairs

    orig_img = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)  # as the demo's image loader
    box_tensor = torch.from_numpy(boxes.astype(np.float32))
    n = len(box_tensor)
    transform = types.SimpleNamespace(
        _aspect_ratio=float(cfg.DATA_PRESET.IMAGE_SIZE[1]) / cfg.DATA_PRESET.IMAGE_SIZE[0],
        _input_size=cfg.DATA_PRESET.IMAGE_SIZE,
    )
    inps = torch.zeros(n, 3, *cfg.DATA_PRESET.IMAGE_SIZE)
    cropped_boxes = torch.zeros(n, 4)
    for i, box in enumerate(box_tensor):
        inps[i], cropped_box = SimpleTransform.test_transform(transform, orig_img, box)
        cropped_boxes[i] = torch.FloatTensor(cropped_box)

    record: dict[str, np.ndarray] = {"crop_boxes": cropped_boxes.numpy()}
    pose_model64 = copy.deepcopy(pose_model).double()
    for flipped in (False, True):
        tag = "flip" if flipped else "plain"
        official_nms = writer_module.pose_nms
        with torch.no_grad():
            for model, inputs, key in (
                (pose_model, inps, "outputs"),
                (pose_model64, inps.double(), "outputs64"),
            ):
                inps_j = torch.cat((inputs, flip(inputs))) if flipped else inputs
                hm = model(inps_j)
                if flipped:
                    hm_flip = flip_heatmap(hm[n:], joint_pairs, shift=False)
                    shifted = hm_flip.clone()
                    shifted[..., 1:] = hm_flip[..., :-1]
                    hm = (hm[:n] + shifted) / 2
                record[f"{tag}_{key}"] = hm.numpy()
        hm = torch.from_numpy(record[f"{tag}_outputs"])

        captured: dict[str, object] = {}
        writer_module.pose_nms = _recording_nms(official_nms, captured)
        writer_module.write_json = lambda all_results, *args, _c=captured, **kwargs: _c.update(
            final=all_results
        )
        with tempfile.TemporaryDirectory() as tmp:
            opt = types.SimpleNamespace(
                sp=True, save_img=False, vis=False, pose_flow=False, pose_track=False, min_box_area=0,
                outputpath=tmp, format=None, eval=False, vis_fast=False,
            )  # fmt: skip
            data_writer = writer_module.DataWriter(cfg, opt)
            scores = torch.linspace(0.95, 0.6, n)[:, None]  # distinct box scores, as the detector gives
            ids = torch.zeros(n, 1)
            data_writer.save(
                box_tensor.clone(), scores, ids, hm.cpu(), cropped_boxes.clone(), orig_img, "im.jpg"
            )
            data_writer.save(None, None, None, None, None, None, None)
            data_writer.update()
        writer_module.pose_nms = official_nms

        _, _, _, merged_preds, merged_scores, pick_ids = captured["result"]
        final = captured["final"][0]["result"]
        record[f"{tag}_keypoints"] = captured["keypoints"]
        record[f"{tag}_scores"] = captured["scores"]
        record[f"{tag}_picks"] = np.array([int(p) for p in pick_ids], dtype=np.int64)
        record[f"{tag}_merged_keypoints"] = np.stack([p.numpy() for p in merged_preds]).astype(np.float32)
        record[f"{tag}_merged_scores"] = np.stack([s.numpy().reshape(-1) for s in merged_scores]).astype(
            np.float32
        )
        record[f"{tag}_proposal_scores"] = np.array([float(r["proposal_score"]) for r in final], np.float32)
        record["box_scores"] = scores.numpy()[:, 0]
        record["use_heatmap_loss"] = np.array(bool(captured["use_heatmap_loss"]))
    np.savez(out, **record)


def state_dict_digest(shapes: dict[str, tuple[int, ...]]) -> dict[str, object]:
    """Key count and sha256 of the sorted "key shape" lines: what a strict load of a checkpoint checks."""
    lines = "".join(f"{key} {list(shape)}\n" for key, shape in sorted(shapes.items()))
    return {"keys": len(shapes), "sha256": hashlib.sha256(lines.encode()).hexdigest()}


def keys(official: Path, configs: list[str], out: Path) -> None:
    sys.path.insert(0, str(official))
    _install_stubs(official)
    from alphapose.models import builder

    importlib.import_module("alphapose.models.fastpose")
    digests = {}
    for config in configs:
        cfg = _attr(yaml.safe_load((official / config).read_text()))
        with torch.device("meta"):
            model = builder.build_sppe(cfg.MODEL, preset_cfg=cfg.DATA_PRESET)
        digests[config] = state_dict_digest({k: tuple(v.shape) for k, v in model.state_dict().items()})
    out.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")


def main() -> None:
    if sys.argv[1:2] == ["--keys"]:
        keys(Path(sys.argv[2]), sys.argv[4:], Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--official", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--boxes", required=True, help="JSON list of x1, y1, x2, y2")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    run(args.official, args.config, args.checkpoint, args.image, np.array(json.loads(args.boxes)), args.out)


if __name__ == "__main__":
    main()
