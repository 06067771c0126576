"""``python -m alphapose.engines --engine E --preset P --detector D --dir WEIGHTS``: export ahead of time.

Builds the pipeline once as the function would, so each network that ``--engine`` gives to a runtime is
exported into the cache beside the weights (with ``--precision int8 --calibration DIR``: quantized on
those images); the CPU function images run it while they are built, so a worker starts on a cached
export. Prints what runs each network.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from alphapose.errors import CommandLineParser, OptionError, WeightsError, run_command
from alphapose.options import MAX_DETECTOR_SIZE


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandLineParser(prog="python -m alphapose.engines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True, help="onnxruntime, openvino or detector=NAME,pose=NAME")
    parser.add_argument("--preset", required=True, help="pose model, e.g. fastpose_res50_coco")
    parser.add_argument("--detector", required=True, help="person detector, e.g. yolox-s")
    parser.add_argument("--dir", type=Path, required=True, help="directory of the weights files")
    parser.add_argument(
        "--detector-size",
        type=int,
        help=f"detector input size, a multiple of 32 up to {MAX_DETECTOR_SIZE} (default: the detector's)",
    )
    parser.add_argument("--precision", default="fp32", help="fp32 (default), bf16, fp16 or int8")
    parser.add_argument("--calibration", type=Path, help="int8: a directory of images to quantize on")
    args = parser.parse_args(argv)
    from alphapose.pipeline import PosePipeline

    try:
        pipeline = PosePipeline.from_weights_dir(
            args.dir,
            preset=args.preset,
            detector=args.detector,
            detector_size=args.detector_size,
            device="cpu",
            engine=args.engine,
            precision=args.precision,
            calibration=args.calibration,
        )
    except OptionError as exc:
        print(f"error: {exc.as_flag()}", file=sys.stderr)
        return 2
    except WeightsError as exc:
        print(f"error: {exc} (--dir selects the directory)", file=sys.stderr)
        return 2
    for network, engine in pipeline.engines.items():
        print(f"{network}: {engine}")
    return 0


if __name__ == "__main__":
    run_command(main, "alphapose.engines")
