"""COCO-style keypoint evaluation: ground truth, person boxes, OKS and AP of results in AlphaPose's format.

The figures are those of a maintained evaluator (``pycocotools``, or ``faster-coco-eval``: the package's
``eval`` extra), fed the annotation file and the results as AlphaPose's ``scripts/validate.py`` feeds
them. COCO-WholeBody files are scored part by part (body, foot, face, each hand, whole body) with the
dataset's own sigmas, as ``xtcocotools`` does, by running the same evaluator on each part's keypoints.
Nothing here needs the evaluator but :func:`coco_eval` and :func:`evaluate`, which import it when called.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from alphapose.errors import install_hint
from alphapose.pose.skeletons import COCO17, COCO_WHOLEBODY133, HALPE26, HALPE136, OKS_SIGMAS

EVALUATORS = ("pycocotools", "faster-coco-eval")
# COCOeval.stats order for keypoints (pycocotools' summarize()).
STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

# OKS sigmas by the annotation file's keypoint count: the skeletons' one table (alphapose/pose/skeletons.py,
# COCO's from pycocotools' Params.setKpParams, Halpe's and COCO-WholeBody's from AlphaPose's oks_iou).
COCO17_SIGMAS = OKS_SIGMAS[COCO17.name]
HALPE26_SIGMAS = OKS_SIGMAS[HALPE26.name]
HALPE136_SIGMAS = OKS_SIGMAS[HALPE136.name]
WHOLEBODY133_SIGMAS = OKS_SIGMAS[COCO_WHOLEBODY133.name]
SIGMAS: Mapping[int, tuple[float, ...]] = {len(sigmas): sigmas for sigmas in OKS_SIGMAS.values()}
# COCO-WholeBody's annotation fields, in the order of its 133 keypoints, with their lengths.
WHOLEBODY_FIELDS = (
    ("keypoints", 17),
    ("foot_kpts", 6),
    ("face_kpts", 68),
    ("lefthand_kpts", 21),
    ("righthand_kpts", 21),
)
# The parts xtcocotools scores a COCO-WholeBody file by: keypoint ranges of the 133.
WHOLEBODY_PARTS: Mapping[str, range] = {
    "body": range(0, 17),
    "foot": range(17, 23),
    "face": range(23, 91),
    "lefthand": range(91, 112),
    "righthand": range(112, 133),
    "wholebody": range(0, 133),
}


class AnnotationError(ValueError):
    """An annotation, detections or results file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class GroundTruth:
    """A keypoint annotation file, checked: its images, its keypoint category and its persons.

    ``dataset`` is the file's COCO dictionary with only the keypoint category's annotations, each with
    ``keypoints`` holding every keypoint (for COCO-WholeBody the five fields in order, 133 keypoints)
    and ``num_keypoints`` the number labelled.
    """

    path: Path
    dataset: dict[str, Any]
    category_id: int
    num_keypoints: int
    category_ids: frozenset[Any]  # every category the file defines

    @property
    def images(self) -> list[dict[str, Any]]:
        """The image entries, in the order of their ids."""
        return sorted(self.dataset["images"], key=lambda image: image["id"])

    @property
    def wholebody(self) -> bool:
        return self.num_keypoints == 133

    @property
    def sigmas(self) -> tuple[float, ...]:
        return SIGMAS[self.num_keypoints]

    def person_boxes(self, image_id: int) -> np.ndarray:
        """The ground-truth person boxes (N, 4) xyxy that the official validation crops on this image:
        not crowds, with a labelled keypoint and a non-empty box once clipped to the image."""
        image = self._by_id[image_id]
        width, height = image["width"], image["height"]
        boxes = []
        for ann in self._persons.get(image_id, ()):
            if ann.get("iscrowd", 0) or ann["num_keypoints"] == 0:
                continue
            if ann["area"] <= 0 or max(ann["keypoints"]) == 0:
                continue
            x, y, w, h = ann["bbox"]
            x1, y1 = min(max(x, 0.0), width - 1), min(max(y, 0.0), height - 1)
            x2, y2 = min(max(x + w, 0.0), width - 1), min(max(y + h, 0.0), height - 1)
            if x2 > x1 and y2 > y1:
                boxes.append((x1, y1, x2, y2))
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)

    @cached_property
    def _by_id(self) -> dict[int, dict[str, Any]]:
        return {image["id"]: image for image in self.dataset["images"]}

    @cached_property
    def _persons(self) -> dict[int, list[dict[str, Any]]]:
        persons: dict[int, list[dict[str, Any]]] = {}
        for ann in self.dataset["annotations"]:
            persons.setdefault(ann["image_id"], []).append(ann)
        return persons


def _read_json(path: Path, what: str) -> Any:
    """The JSON in ``path``; an :class:`AnnotationError` naming the file (``what``) otherwise."""
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise AnnotationError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{what} {path} is not JSON: {exc}") from None


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read and check a COCO keypoint annotation file (COCO, Halpe or COCO-WholeBody).

    Refused with an :class:`AnnotationError` naming the file: not JSON, no images/annotations/categories,
    no category with keypoints (or several and none named ``person``), an annotation of a category the
    file does not define or of an image it does not list, keypoints of the wrong length, a bad box.
    """
    path = Path(path)
    data = _read_json(path, "annotation file")
    if not isinstance(data, dict):
        raise AnnotationError(f"annotation file {path} holds a {type(data).__name__}, not a COCO object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise AnnotationError(f"annotation file {path} has no {key!r} list: not a COCO annotation file")
    category = _keypoint_category(path, data["categories"])
    category_ids = {c.get("id") for c in data["categories"] if isinstance(c, dict)}
    images = {}
    for n, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not {"id", "file_name", "width", "height"} <= image.keys():
            raise AnnotationError(f"annotation file {path}: images[{n}] lacks id, file_name, width or height")
        images[image["id"]] = image
    wholebody = any(isinstance(a, dict) and "foot_kpts" in a for a in data["annotations"])
    num_keypoints = 133 if wholebody else len(category["keypoints"])
    if num_keypoints not in SIGMAS:
        raise AnnotationError(
            f"annotation file {path}: category {category.get('name')!r} has {num_keypoints} keypoints; "
            f"OKS sigmas are known for {', '.join(map(str, SIGMAS))} (COCO, Halpe, COCO-WholeBody)"
        )
    annotations = []
    for n, ann in enumerate(data["annotations"]):
        where = f"annotation file {path}: annotations[{n}]"
        if not isinstance(ann, dict):
            raise AnnotationError(f"{where} is not an object")
        if ann.get("category_id") not in category_ids:
            raise AnnotationError(
                f"{where} has category_id {ann.get('category_id')!r}, which the file's categories do not "
                f"define (they define {sorted(category_ids, key=str)})"
            )
        if ann["category_id"] != category["id"]:
            continue
        if ann.get("image_id") not in images:
            raise AnnotationError(f"{where} has image_id {ann.get('image_id')!r}, which images does not list")
        annotations.append(_checked_annotation(where, ann, wholebody, num_keypoints))
    dataset = {**data, "categories": [category], "annotations": annotations, "images": list(images.values())}
    return GroundTruth(path, dataset, category["id"], num_keypoints, frozenset(category_ids))


def _keypoint_category(path: Path, categories: list[Any]) -> dict[str, Any]:
    with_keypoints = [c for c in categories if isinstance(c, dict) and c.get("keypoints") and "id" in c]
    if len(with_keypoints) > 1:
        with_keypoints = [c for c in with_keypoints if c.get("name") == "person"]
    if len(with_keypoints) != 1:
        raise AnnotationError(
            f"annotation file {path} has no single category with keypoints (a person_keypoints file has "
            "one, 'person'); is it an instances or captions file?"
        )
    return with_keypoints[0]


def _checked_annotation(where: str, ann: dict[str, Any], wholebody: bool, count: int) -> dict[str, Any]:
    fields = WHOLEBODY_FIELDS if wholebody else (("keypoints", count),)
    keypoints: list[float] = []
    for name, length in fields:
        values = ann.get(name)
        if not isinstance(values, list) or len(values) != 3 * length or not all(map(_is_number, values)):
            raise AnnotationError(f"{where}: {name!r} must be a list of {3 * length} numbers (x, y, v)")
        keypoints += values
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
        raise AnnotationError(f"{where}: 'bbox' must be four numbers x, y, w, h")
    if not _is_number(ann.get("area")):
        raise AnnotationError(f"{where}: 'area' must be a number (the OKS scale)")
    labelled = sum(1 for v in keypoints[2::3] if v > 0)
    return {**ann, "keypoints": keypoints, "num_keypoints": labelled, "iscrowd": ann.get("iscrowd", 0)}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load_detections(path: str | Path, truth: GroundTruth) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Person boxes from a detections file in AlphaPose's ``test_det_yolo.json`` format: a list of
    ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.

    ``image_id`` is the annotation file's id, or (as the official loader also takes it) a file name
    whose stem is that id; a name listed as an image's ``file_name`` is taken too. Entries of another
    category the annotation file defines are left out; a category it does not define is refused, as
    are entries for images it does not list. Answers image id -> (boxes (N, 4) xyxy, scores (N,)).
    """
    path = Path(path)
    entries = _read_json(path, "detections file")
    if not isinstance(entries, list):
        raise AnnotationError(f"detections file {path} must hold a list of detections")
    ids = {image["id"] for image in truth.dataset["images"]}
    by_name = {Path(image["file_name"]).name: image["id"] for image in truth.dataset["images"]}
    found: dict[int, tuple[list[list[float]], list[float]]] = {}
    for n, entry in enumerate(entries):
        where = f"detections file {path}: entry {n}"
        if not isinstance(entry, dict):
            raise AnnotationError(f"{where} is not an object")
        bbox, score = entry.get("bbox"), entry.get("score")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
            raise AnnotationError(f"{where}: 'bbox' must be four numbers x, y, w, h")
        if not _is_number(score):
            raise AnnotationError(f"{where}: 'score' must be a number")
        category = entry.get("category_id", truth.category_id)
        if category not in truth.category_ids:
            raise AnnotationError(f"{where} has category_id {category!r}, which {truth.path} does not define")
        if category != truth.category_id:
            continue
        image_id = _detection_image(entry.get("image_id"), ids, by_name)
        if image_id is None:
            raise AnnotationError(
                f"{where} has image_id {entry.get('image_id')!r}, which {truth.path} does not list"
            )
        x, y, w, h = bbox
        boxes, scores = found.setdefault(image_id, ([], []))
        boxes.append([x, y, x + w, y + h])
        scores.append(float(score))
    return {
        image_id: (np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(scores, dtype=np.float32))
        for image_id, (boxes, scores) in found.items()
    }


def _detection_image(value: object, ids: set[int], by_name: Mapping[str, int]) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value in ids else None
    if isinstance(value, str):
        name = Path(value).name
        if name in by_name:
            return by_name[name]
        stem = Path(name).stem.split("_")[-1]
        if stem.isdigit() and int(stem) in ids:
            return int(stem)
    return None


def oks(truth: Sequence[float], predicted: np.ndarray, area: float, sigmas: Sequence[float]) -> float:
    """Object keypoint similarity of one predicted pose (K, 2) with one labelled person (3K: x, y, v).

    The mean over the labelled keypoints of exp(-d^2 / (2 s^2 k^2)), s^2 the person's area and k twice the
    keypoint's sigma, as the COCO evaluation defines it (a person with no labelled keypoint is scored by
    the evaluator against its box instead, and has no value here).
    """
    gt = np.asarray(truth, dtype=np.float64).reshape(-1, 3)
    xy = np.asarray(predicted, dtype=np.float64).reshape(-1, 2)
    if len(gt) != len(xy) or len(gt) != len(sigmas):
        raise ValueError(f"{len(gt)} labelled keypoints, {len(xy)} predicted, {len(sigmas)} sigmas")
    labelled = gt[:, 2] > 0
    if not labelled.any():
        raise ValueError("the person has no labelled keypoint")
    variances = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((xy - gt[:, :2]) ** 2).sum(axis=1)
    e = d2 / variances / (area + np.spacing(1)) / 2
    return float(np.exp(-e[labelled]).mean())


def coco_eval(
    truth: GroundTruth,
    results: Sequence[Mapping[str, Any]],
    *,
    keypoints: range | None = None,
    evaluator: str = "pycocotools",
) -> Any:
    """The evaluator's COCOeval for ``results`` (AlphaPose's results entries with integer image ids),
    evaluated, accumulated and summarised, on the keypoints ``keypoints`` of the annotations (default:
    all) with their sigmas. Its printing goes nowhere; its ``stats`` and ``ious`` are the figures."""
    coco_class, eval_class = _evaluator(evaluator)
    part = keypoints or range(truth.num_keypoints)
    sigmas = np.asarray(truth.sigmas, dtype=np.float64)[list(part)]
    dataset = {**truth.dataset, "annotations": [_part(ann, part) for ann in truth.dataset["annotations"]]}
    # A preset whose keypoints begin with the file's (Halpe's with COCO's 17) is scored on those.
    for result in results:
        if len(result["keypoints"]) < 3 * truth.num_keypoints:
            raise ValueError(
                f"a result has {len(result['keypoints']) // 3} keypoints; the persons of {truth.path} "
                f"have {truth.num_keypoints}"
            )
    detections = [_part(result, part) for result in results]
    if keypoints is not None:
        # As xtcocotools: a part prediction with no keypoint score is left out, and every part of a
        # pose has the size of its body keypoints' box (what decides APm, APl for unmatched poses).
        detections = [
            {**d, "body_area": _box_area(r["keypoints"][:51])}
            for d, r in zip(detections, results, strict=True)
            if any(s > 0 for s in d["keypoints"][2::3])
        ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco_class()
        gt.dataset = dataset
        gt.createIndex()
        if detections:
            dt = gt.loadRes(detections)
            if keypoints is not None:  # loadRes sizes each pose by the keypoints it is given
                for ann in dt.anns.values():
                    ann["area"] = ann["body_area"]
        else:  # loadRes needs one result at least; no result at all scores 0
            dt = coco_class()
            dt.dataset = {**dataset, "annotations": []}
            dt.createIndex()
        if evaluator == "pycocotools":
            run = eval_class(gt, dt, "keypoints")
            run.params.kpt_oks_sigmas = sigmas
        else:
            run = eval_class(gt, dt, "keypoints", kpt_oks_sigmas=sigmas.tolist(), print_function=print)
        run.evaluate()
        run.accumulate()
        run.summarize()
    return run


def evaluate(
    truth: GroundTruth, results: Sequence[Mapping[str, Any]], *, evaluator: str = "pycocotools"
) -> dict[str, dict[str, float]]:
    """COCO keypoint AP, AP50, AP75, APm, APl, AR, ... of ``results``: ``{"all": stats}``, or for a
    COCO-WholeBody file one entry per part of :data:`WHOLEBODY_PARTS` (xtcocotools' evaluation)."""
    parts: Mapping[str, range | None] = WHOLEBODY_PARTS if truth.wholebody else {"all": None}
    report = {}
    for name, part in parts.items():
        stats = coco_eval(truth, results, keypoints=part, evaluator=evaluator).stats
        report[name] = {stat: float(value) for stat, value in zip(STAT_NAMES, stats, strict=False)}
    return report


def _box_area(keypoints: Sequence[float]) -> float:
    xs, ys = keypoints[0::3], keypoints[1::3]
    return (max(xs) - min(xs)) * (max(ys) - min(ys))


def _part(annotation: Mapping[str, Any], part: range) -> dict[str, Any]:
    keypoints = annotation["keypoints"]
    selected = [v for i in part for v in keypoints[3 * i : 3 * i + 3]]
    out = {**annotation, "keypoints": selected}
    if "num_keypoints" in annotation:
        out["num_keypoints"] = sum(1 for v in selected[2::3] if v > 0)
    return out


def check_evaluator(name: str) -> None:
    """Refuse an evaluator that is not installed before anything runs (an :class:`ImportError` saying
    what to install), rather than after hours of inference."""
    _evaluator(name)


def _evaluator(name: str) -> tuple[Any, Any]:
    try:
        if name == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            return COCO, COCOeval
        if name == "faster-coco-eval":
            from faster_coco_eval import COCO, COCOeval_faster

            return COCO, COCOeval_faster
    except ImportError as exc:
        hint = install_hint("eval")
        raise ImportError(f"the {name} evaluator is not installed ({exc}); install it with {hint}") from exc
    raise ValueError(f"unknown evaluator {name!r}; choose one of {', '.join(EVALUATORS)}")


class ResumeError(ValueError):
    """A partial results file that cannot be continued; the message names it and says what to do."""


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The settings that differ, by name, a nested one by its path (``poses.flip``): what the user
    changed, rather than the group it is in."""
    changed = []
    for key in sorted({*old, *new}):
        before, after = old.get(key), new.get(key)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changed += _differences(before, after, f"{prefix}{key}.")
        elif before != after:
            changed.append(prefix + key)
    return changed


class PartialResults:
    """Results written image by image, so that an interrupted run goes on where it stopped.

    The file is JSON Lines: a first line ``{"settings": ...}`` saying what produced it, then one line
    ``{"image_id": ..., "results": [...]}`` per finished image, flushed and synced as it is written.
    Opening an existing file takes its images as done; a last line cut short by the interruption is
    dropped (that image runs again), and a file of other settings is refused rather than mixed in.
    ``key`` names each line's item (another command keeps frames), ``remedy`` ends the refusals with what
    the user of that command can do.
    """

    def __init__(
        self,
        path: str | Path,
        settings: Mapping[str, Any],
        *,
        key: str = "image_id",
        remedy: str = "pass --restart to discard it",
    ) -> None:
        self.path = Path(path)
        self.settings = json.loads(json.dumps(settings))  # as it reads back
        self.key, self.remedy = key, remedy
        self.done: dict[Any, list[dict[str, Any]]] = {}
        if self.path.exists():
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"settings": self.settings}) + "\n")
        self._file = self.path.open("a")

    def _load(self) -> None:
        try:
            text = self.path.read_text()
        except UnicodeDecodeError:  # bytes that are no text: a file of something else
            raise ResumeError(f"{self.path} is not a partial results file; {self.remedy}") from None
        lines = text.split("\n")
        complete, cut = lines[:-1], lines[-1]  # a complete file ends with a newline: cut == ""
        try:
            header = json.loads(complete[0]) if complete else None
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or "settings" not in header:
            raise ResumeError(f"{self.path} is not a partial results file; {self.remedy}")
        if header["settings"] != self.settings:
            changed = _differences(header["settings"], self.settings)
            raise ResumeError(
                f"{self.path} holds results of other settings (different: {', '.join(changed)}); "
                f"{self.remedy}, or run with its settings"
            )
        kept = len(complete[0]) + 1
        for number, line in enumerate(complete[1:], start=2):
            try:
                entry = json.loads(line)
                self.done[entry[self.key]] = entry["results"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ResumeError(f"{self.path} line {number} is damaged; {self.remedy}") from None
            kept += len(line) + 1
        if cut:  # the interrupted write: drop it so that the next line starts clean
            with self.path.open("r+") as file:
                file.truncate(len(text[:kept].encode()))

    def add(self, image_id: Any, results: list[dict[str, Any]]) -> None:
        self._file.write(json.dumps({self.key: image_id, "results": results}) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.done[image_id] = results

    def close(self) -> None:
        self._file.close()


def keypoint_displacement(
    first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Per image, how far the keypoints of two runs on the same images lie apart, in pixels.

    Persons are paired greedily, closest mean keypoint distance first (two runs with the same boxes and
    no pose NMS pair each box with itself); unpaired persons are counted. Each entry: image_id,
    persons in each run, pairs, and the mean and largest keypoint distance over the pairs (None without).
    """
    images: dict[Any, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for index, run in enumerate((first, second)):
        for result in run:
            xy = np.asarray(result["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
            images.setdefault(result["image_id"], ([], []))[index].append(xy)
    report = []
    for image_id, (a, b) in images.items():
        distances = [(np.linalg.norm(p - q, axis=1), i, j) for i, p in enumerate(a) for j, q in enumerate(b)]
        distances.sort(key=lambda item: float(item[0].mean()))
        used_a, used_b, paired = set(), set(), []
        for d, i, j in distances:
            if i not in used_a and j not in used_b:
                used_a.add(i)
                used_b.add(j)
                paired.append(d)
        every = np.concatenate(paired) if paired else np.zeros(0)
        report.append(
            {
                "image_id": image_id,
                "persons": [len(a), len(b)],
                "pairs": len(paired),
                "mean_px": float(every.mean()) if len(every) else None,
                "max_px": float(every.max()) if len(every) else None,
            }
        )
    return report
