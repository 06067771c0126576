"""CVAT's view of a skeleton: the label spec advertised in function.yaml.

CVAT reads a function's labels only from ``metadata.annotations.spec``; the skeleton constructor's
"From model" button draws the ``svg``. Both are generated here from :mod:`alphapose.pose.skeletons`.
"""

from __future__ import annotations

import json

from alphapose.pose.skeletons import Skeleton

PERSON_LABEL = "person"


def skeleton_svg(skeleton: Skeleton) -> str:
    """CVAT's skeleton SVG: edges first (drawn under the nodes), then one circle per keypoint.

    Node ids are 1-based and equal the sublabel ids of :func:`label_spec`; ``data-label-name`` ties
    each node to its sublabel by name.
    """
    lines = []
    for a, b in skeleton.edges:
        (x1, y1), (x2, y2) = skeleton.layout[a], skeleton.layout[b]
        lines.append(
            f'<line x1="{x1:g}" y1="{y1:g}" x2="{x2:g}" y2="{y2:g}" data-type="edge" '
            f'data-node-from="{a + 1}" data-node-to="{b + 1}"></line>'
        )
    for i, (name, (x, y)) in enumerate(zip(skeleton.keypoints, skeleton.layout, strict=True), start=1):
        lines.append(
            f'<circle r="0.75" cx="{x:g}" cy="{y:g}" data-type="element node" '
            f'data-element-id="{i}" data-node-id="{i}" data-label-name="{name}"></circle>'
        )
    return "\n".join(lines)


def label_spec(skeleton: Skeleton, label: str = PERSON_LABEL) -> list[dict]:
    """The list CVAT parses from ``metadata.annotations.spec``: one skeleton label with its points."""
    return [
        {
            "name": label,
            "type": "skeleton",
            "sublabels": [
                {"id": i, "name": name, "type": "points"}
                for i, name in enumerate(skeleton.keypoints, start=1)
            ],
            "svg": skeleton_svg(skeleton),
        }
    ]


def label_spec_json(skeleton: Skeleton, label: str = PERSON_LABEL) -> str:
    """The spec as the JSON text stored in the yaml annotation (stable, human-diffable)."""
    return json.dumps(label_spec(skeleton, label), indent=2)
