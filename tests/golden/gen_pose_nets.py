"""Golden fixtures of the pose networks: every preset's official model class on seeded weights.

Weights: the synthetic weights writer's checkpoint of each preset for seed ``POSE_SEED``
(:func:`tests.golden.seeded.write_pose_checkpoint`), loaded strictly by the official model built from the
preset's official config. The DCN preset runs the official model with the CPU deformable convolution of
tests/golden/official.py (written from the official CUDA kernel; this module also checks it against
``torchvision.ops.deform_conv2d`` on offsets that reach outside the map).

pose_nets.npz holds ``pixels`` (2, 256, 192, 3) uint8 RGB: two regions of tests/data/astronaut.jpg resized
to the input size, and per preset ``<preset>`` (2, K, 64, 48) float32: the official network's heatmaps for
those pixels normalised as the official ``test_transform`` does (``im_to_torch``, then R, G, B minus
0.406, 0.457, 0.480). keys/<file>: the official models' state_dict keys, shapes and dtypes (the layouts
our checkpoints must match), one ``key<TAB>(shape)<TAB>dtype`` line per tensor.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from tests.golden.official import run_official

DATA = Path(__file__).parent / "data"
FIXTURE = "pose_nets.npz"
# preset -> (official config, key list file name)
PRESET_CONFIGS = {
    "fastpose_res50_coco": ("configs/coco/resnet/256x192_res50_lr1e-3_1x.yaml", "fastpose_keys.txt"),
    "fastpose_res50_halpe26": (
        "configs/halpe_26/resnet/256x192_res50_lr1e-3_1x.yaml",
        "256x192_res50_lr1e-3_1x_halpe_26_keys.txt",
    ),
    "simplepose_res50_coco": (
        "configs/coco/resnet/256x192_res50_lr1e-3_1x-simple.yaml",
        "256x192_res50_lr1e-3_1x-simple_coco_keys.txt",
    ),
    "fastpose_dcn_res50_coco": (
        "configs/coco/resnet/256x192_res50_lr1e-3_2x-dcn.yaml",
        "256x192_res50_lr1e-3_2x-dcn_coco_keys.txt",
    ),
}
PHOTO = Path(__file__).parents[1] / "data" / "astronaut.jpg"
# Two regions of the photo (x1, y1, x2, y2), resized to the 192 x 256 input: the person, the helmet.
REGIONS = ((60, 10, 380, 512), (270, 300, 512, 512))
MEANS = (0.406, 0.457, 0.480)


def input_pixels() -> np.ndarray:
    """(2, 256, 192, 3) uint8 RGB network inputs cut from the photo."""
    image = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    return np.stack(
        [
            cv2.resize(image[y1:y2, x1:x2], (192, 256), interpolation=cv2.INTER_AREA)
            for x1, y1, x2, y2 in REGIONS
        ]
    )


def generate(official: Path, out: Path) -> list[Path]:
    from tests.golden import seeded  # our code: only in the parent process

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for preset in PRESET_CONFIGS:
            seeded.write_pose_checkpoint(preset, work).rename(work / f"{preset}.pth")
        np.save(work / "pixels.npy", input_pixels())
        run_official(official, f"{__name__}:run_official_part", work)
        (out / "keys").mkdir(exist_ok=True)
        written = [out / FIXTURE]
        shutil.copy(work / FIXTURE, out / FIXTURE)
        for _, key_file in PRESET_CONFIGS.values():
            shutil.copy(work / key_file, out / "keys" / key_file)
            written.append(out / "keys" / key_file)
    return written


def official_pose_model(official: Path, preset: str, checkpoint: Path) -> torch.nn.Module:
    """Child process: the official network of ``preset`` from its config, checkpoint loaded strictly."""
    from alphapose.models import builder
    from alphapose.utils.config import update_config

    cfg = update_config(str(official / PRESET_CONFIGS[preset][0]))
    model = builder.build_sppe(cfg.MODEL, preset_cfg=cfg.DATA_PRESET)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu"), strict=True)
    return model.eval()


def official_input(pixels: np.ndarray) -> torch.Tensor:
    """Child process: the official normalisation of uint8 RGB crops (im_to_torch, then the three means)."""
    from alphapose.utils.transforms import im_to_torch

    crops = []
    for crop in pixels:
        tensor = im_to_torch(crop)
        for channel, mean in enumerate(MEANS):  # SimpleTransform.test_transform: img[c].add_(-mean)
            tensor[channel].add_(-mean)
        crops.append(tensor)
    return torch.stack(crops)


def check_deform_conv_stub() -> None:
    """The CPU DCN written from the CUDA kernel agrees with torchvision's on awkward offsets."""
    import torchvision

    from tests.golden.official import deform_conv_cpu

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 7, 5, generator=generator)
    weight = torch.randn(3, 4, 3, 3, generator=generator)
    for stride in (1, 2):
        out_h, out_w = (7 - 1) // stride + 1, (5 - 1) // stride + 1
        offset = 6 * torch.rand(2, 18, out_h, out_w, generator=generator) - 3
        ours = deform_conv_cpu(x, offset, weight, stride, 1)
        reference = torchvision.ops.deform_conv2d(x, offset, weight, stride=stride, padding=1)
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def run_official_part(official: Path, work: Path) -> None:
    import copy

    from tests.golden.conditioning import accept, condition

    torch.set_grad_enabled(False)
    check_deform_conv_stub()
    batch = official_input(np.load(work / "pixels.npy"))
    arrays = {"pixels": np.load(work / "pixels.npy")}
    for preset, (_, key_file) in PRESET_CONFIGS.items():
        model = official_pose_model(official, preset, work / f"{preset}.pth")
        arrays[preset] = model(batch).numpy().astype(np.float32)
        heatmaps64 = copy.deepcopy(model).double()(batch.double()).numpy()
        arrays[f"{preset}_condition"] = np.array(accept(condition(arrays[preset], heatmaps64), preset))
        lines = [f"{key}\t{tuple(value.shape)}\t{value.dtype}" for key, value in model.state_dict().items()]
        (work / key_file).write_text("\n".join(lines) + "\n")
    np.savez_compressed(work / FIXTURE, **arrays)
