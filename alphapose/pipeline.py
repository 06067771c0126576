"""The whole AlphaPose pipeline behind one call: image in, one pose per person out.

detect persons -> crop every box -> one batched pose forward -> decode heatmaps -> pose NMS.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alphapose.detection.person_detector import FAMILIES, PersonDetector
from alphapose.engines import NETWORKS
from alphapose.engines.calibration import CalibrationSet, detector_inputs, pose_inputs
from alphapose.engines.precision import Precision, require_cpu_units, resolve_precision
from alphapose.engines.prepare import Calibration, NetworkEngine, check_engines, prepare_network
from alphapose.errors import OptionError, SyntheticWeightsWarning, WeightsError
from alphapose.images.decode import rgb_image_size
from alphapose.options import PipelineOptions
from alphapose.pose.nms import pose_nms
from alphapose.pose.presets import PosePreset
from alphapose.pose.skeletons import Skeleton
from alphapose.pose.transforms import crop_persons, crop_persons_batched, decode_outputs, flip_heatmaps
from alphapose.structures import Pose, pose_score
from alphapose.weights.download import download_hint, is_synthetic
from alphapose.weights.load import load_detector, load_pose_model

# Crops per pose forward on the CPU: the time per crop is lowest from 4 to 8, then grows (bench/README.md).
CPU_FORWARD_BATCH = 8
# Frames per detector forward by device type (PosePipeline.frames). On the CPU a batch of frames costs what
# the frames cost one by one (bench/README.md, "Videos"), so frames go one at a time; on a GPU one 640x640
# frame leaves most of the device idle and a batch shares each forward's fixed costs (not yet measured:
# bench.video --device cuda measures it).
FRAME_BATCH = {"cpu": 1, "cuda": 8}


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` means CUDA when this process can see a GPU, else the CPU; a GPU that is not there is
    an :class:`OptionError` on ``device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        visible = torch.cuda.device_count()
        if (resolved.index or 0) >= visible:
            raise OptionError("device", str(device), f"{visible} CUDA device(s) visible")
    return resolved


class PosePipeline:
    """Detector + pose network + decoding, sharing one device and precision policy.

    ``precision`` says how the two networks run (default: ``auto`` for the device); networks given
    here must already be in it (:meth:`Precision.prepare`), as :meth:`from_weights_dir` does.
    ``synthetic_weights`` lists the files of synthetic random weights the networks came from (empty for
    official files), so that every tool can say that its answers mean nothing.
    """

    def __init__(
        self,
        detector: PersonDetector,
        pose_model: nn.Module,
        preset: PosePreset,
        device: torch.device,
        flip: bool = False,
        max_batch: int = PipelineOptions.max_batch,
        precision: Precision | None = None,
        engines: dict[str, NetworkEngine] | None = None,
        synthetic_weights: Sequence[Path] = (),
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.detector = detector
        self.pose_model = pose_model
        self.preset = preset
        self.device = device
        self.flip = flip
        self.max_batch = max_batch
        self.precision = precision or resolve_precision("auto", device)
        # What runs each network (alphapose.engines); given networks are taken to be PyTorch modules.
        self.engines = engines or {
            network: NetworkEngine.torch(network, "torch", self.precision) for network in NETWORKS
        }
        self.synthetic_weights = tuple(synthetic_weights)
        # The GPU's crop path, chosen by the device; tests switch it on for the CPU to run that code there.
        self.batched_crops = device.type != "cpu"

    @property
    def skeleton(self) -> Skeleton:
        return self.preset.skeleton

    @classmethod
    def from_weights_dir(
        cls, path: str | Path, options: PipelineOptions | None = None, **overrides: Any
    ) -> PosePipeline:
        """Build from a directory holding the official files under their official names.

        ``options`` holds every setting (default: :class:`PipelineOptions`'s defaults); keyword arguments
        override single fields, e.g. ``from_weights_dir("weights", preset="fastpose_res50_halpe26")``.
        The networks are loaded in their inference form: batch norms folded into the convolutions and
        weights in channels-last layout, which oneDNN runs faster on the CPU (bench/README.md) and which
        is cuDNN's layout for fp16 tensor-core convolutions; then put in ``options.precision``
        (:mod:`alphapose.engines.precision`; on a CPU, bf16 and fp16 convert the weights, and a CPU without
        the units for them is refused before anything loads, as they would run slower than fp32). Nothing
        process-wide is changed: capping the CPU threads is
        :func:`alphapose.engines.threads.configure_cpu_threads`, a separate start-up step.
        ``options.engine`` other than ``torch`` runs a network's ONNX export in that runtime instead
        (:mod:`alphapose.engines`: exported once, cached beside the weights); :attr:`engines` says what
        runs each network. Files of synthetic random weights give a :class:`SyntheticWeightsWarning`
        and are listed in :attr:`synthetic_weights`. Precision int8 quantizes each export on
        ``options.calibration``'s images: the detector on its letterboxed inputs, the pose network on the
        crops of the persons the float32 detector finds in them (:mod:`alphapose.engines.calibration`),
        both only when no quantized model is cached.
        """
        options = replace(options or PipelineOptions(), **overrides)
        preset, detector_spec = options.pose_preset, options.detector_spec
        device = resolve_device(options.device)  # a missing GPU is named before missing files
        precision = resolve_precision(options.precision, device)
        chosen = check_engines(options.engine, device, precision)  # refused before anything loads
        require_cpu_units(precision)  # bf16 or fp16 emulated on this CPU would be slower than fp32
        directory = Path(path)
        files = (detector_spec.weights.name, preset.checkpoint.name)
        missing = [name for name in files if not (directory / name).is_file()]
        if missing:
            raise WeightsError(
                f"missing weights in {directory}: {', '.join(missing)}; download them with "
                + download_hint(directory, preset.name, detector_spec.name)
            )
        images = None
        if precision.name == "int8":  # PipelineOptions refuses int8 without a calibration set
            images = CalibrationSet.from_directory(options.calibration)
        detector_weights, size = directory / detector_spec.weights.name, options.detector_input_size
        family = FAMILIES[detector_spec.family]
        detector_model = load_detector(detector_weights, size, device, fold_batch_norm=True)
        detector_model = detector_model.to(memory_format=torch.channels_last)

        def detector_with(model: nn.Module) -> PersonDetector:
            confidence, nms = options.detector_confidence, options.detector_nms
            return PersonDetector(model, family, size, confidence=confidence, nms_threshold=nms)

        float_detector = detector_with(detector_model)  # finds the pose network's calibration crops
        calibrations = {"detector": None, "pose": None}
        if images is not None:
            calibrations = {
                "detector": Calibration(
                    images.cache_key, lambda: detector_inputs(images, family.prepare, size)
                ),
                "pose": Calibration(
                    images.cache_key, lambda: pose_inputs(images, float_detector, preset.input_size)
                ),
            }
        detector_model, detector_engine = prepare_network(
            "detector",
            chosen["detector"],
            detector_model,
            precision,
            detector_weights,
            (3, size, size),
            calibrations["detector"],
        )
        detector = detector_with(detector_model)
        pose_weights = directory / preset.checkpoint.name
        pose_model = load_pose_model(preset, pose_weights, device, fold_batch_norm=True)
        pose_model, pose_engine = prepare_network(
            "pose",
            chosen["pose"],
            pose_model.to(memory_format=torch.channels_last),
            precision,
            pose_weights,
            (3, *preset.input_size),
            calibrations["pose"],
        )
        return cls(
            detector,
            pose_model,
            preset,
            device,
            flip=options.flip,
            max_batch=options.max_batch,
            precision=precision,
            engines={"detector": detector_engine, "pose": pose_engine},
            synthetic_weights=_warn_if_synthetic((detector_weights, pose_weights)),
        )

    def __call__(self, image: np.ndarray) -> list[Pose]:
        """All persons in an RGB uint8 HxWx3 image.

        The whole pipeline is the call itself, since that is what a pipeline is for; :meth:`estimate` is
        the one other operation, the pose stage on boxes the caller brings.
        """
        with self.precision.autocast():  # the detector checks the image
            boxes, scores = self.detector(image)
        return self._estimate(image, boxes, scores)

    def frames(self, images: Iterable[np.ndarray], frame_batch: int | None = None) -> Iterator[list[Pose]]:
        """Each RGB frame's poses, in order: the detector runs on ``frame_batch`` frames per forward
        (default: the device's, :data:`FRAME_BATCH`), the pose stage on each frame's persons; a frame's
        poses equal ``self(frame)``'s, which is the call for one frame per forward. Nothing is read
        ahead beyond one batch."""
        size = FRAME_BATCH.get(self.device.type, 1) if frame_batch is None else frame_batch
        if size < 1:
            raise ValueError(f"frame_batch must be at least 1, got {size}")
        if size == 1:
            yield from map(self, images)
            return
        iterator = iter(images)
        while chunk := list(itertools.islice(iterator, size)):
            with self.precision.autocast():  # the detector checks each frame
                detections = self.detector.detect_batch(chunk)
            for image, (boxes, scores) in zip(chunk, detections, strict=True):
                yield self._estimate(image, boxes, scores)

    def estimate(
        self,
        image: np.ndarray,
        boxes_xyxy: np.ndarray | torch.Tensor,
        box_scores: np.ndarray | torch.Tensor,
        *,
        nms: bool = True,
    ) -> list[Pose]:
        """The pose stage alone, on given boxes (N, 4) xyxy with scores (N,).

        ``nms=False`` skips pose NMS and answers one pose per box, in the boxes' order: the official
        validation on ground-truth boxes merges nothing, since each box is a different person.
        """
        rgb_image_size(image)
        return self._estimate(image, boxes_xyxy, box_scores, nms=nms)

    def _estimate(
        self,
        image: np.ndarray,
        boxes_xyxy: np.ndarray | torch.Tensor,
        box_scores: np.ndarray | torch.Tensor,
        *,
        nms: bool = True,
    ) -> list[Pose]:
        """:meth:`estimate` on an image already checked (by the detector's letterbox or :meth:`estimate`)."""
        boxes = torch.as_tensor(np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4))
        scores = torch.as_tensor(np.asarray(box_scores, dtype=np.float32).reshape(-1))
        if len(boxes) != len(scores):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} box scores")
        if len(boxes) == 0:
            return []
        batch, crop_boxes = self.crops(image, boxes.numpy())
        outputs = self.heatmaps(batch)
        keypoints, keypoint_scores = decode_outputs(outputs, crop_boxes, self.preset.regression_joints)
        if not nms:
            return [
                self._pose(boxes[i], float(scores[i]), torch.from_numpy(keypoints[i]), torch.from_numpy(k))
                for i, k in enumerate(keypoint_scores)
            ]
        merged = pose_nms(
            boxes, torch.from_numpy(keypoints), torch.from_numpy(keypoint_scores), params=self.preset.nms
        )
        return [self._pose(boxes[m.pick], float(scores[m.pick]), m.keypoints, m.scores) for m in merged]

    def crops(self, image: np.ndarray, boxes_xyxy: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Normalised crops (N, 3, H, W) on the model's device and the crop boxes (N, 4).

        On a GPU the image is uploaded once and warped there in one batched operation; on the CPU
        OpenCV's per-box warp is the faster way to the same pixels.
        """
        if not self.batched_crops:
            return crop_persons(image, boxes_xyxy, self.preset.input_size)
        pixels = torch.from_numpy(np.require(image, requirements=("C", "W"))).to(self.device)
        return crop_persons_batched(pixels, boxes_xyxy, self.preset.input_size)

    def heatmaps(self, batch: torch.Tensor) -> torch.Tensor:
        """Pose network on normalised crops (N, 3, H, W), in chunks of ``max_batch``; float32 CPU output
        maps (heatmaps or integral-regression maps), averaged with the flipped crops' maps before any
        decoding when flip test is on, whatever the preset's loss, as the reference does.

        On the CPU a forward pass takes at most ``CPU_FORWARD_BATCH`` crops (flipped copies included):
        beyond that the activations outgrow the caches and each crop costs more, not less.
        """
        chunk_size = self.max_batch
        if self.device.type == "cpu":
            chunk_size = max(1, min(chunk_size, CPU_FORWARD_BATCH // (2 if self.flip else 1)))
        outputs = []
        with torch.inference_mode(), self.precision.autocast():
            for chunk in batch.split(chunk_size):
                chunk = chunk.to(self.device, non_blocking=True)
                inputs = torch.cat([chunk, chunk.flip(-1)]) if self.flip else chunk
                heatmaps = self.pose_model(inputs).float()
                if self.flip:
                    n = len(chunk)
                    heatmaps = (heatmaps[:n] + flip_heatmaps(heatmaps[n:], self.skeleton)) / 2
                outputs.append(heatmaps.cpu())
        return torch.cat(outputs)

    @staticmethod
    def _pose(box: torch.Tensor, box_score: float, keypoints: torch.Tensor, scores: torch.Tensor) -> Pose:
        kp_scores = scores.numpy().astype(np.float32)
        return Pose(
            box=box.numpy().astype(np.float32),
            box_score=box_score,
            keypoints=keypoints.numpy().astype(np.float32),
            keypoint_scores=kp_scores,
            score=pose_score(kp_scores, box_score),
        )


def _warn_if_synthetic(paths: Sequence[Path]) -> tuple[Path, ...]:
    """The synthetic files among ``paths``, warned about at the line that called from_weights_dir."""
    synthetic = tuple(path for path in paths if is_synthetic(path))
    if synthetic:
        warnings.warn(
            SyntheticWeightsWarning(
                f"{', '.join(map(str, synthetic))}: synthetic random weights (written by "
                "tools.synthetic_weights), not the official files; the poses found mean nothing"
            ),
            stacklevel=3,
        )
    return synthetic
