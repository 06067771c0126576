"""Stage the function directory that ``nuctl deploy --path`` builds: ``python -m tools.stage``.

Nuclio copies the whole ``--path`` directory into the image and reads no ignore file, so the function is
deployed from a directory holding only what it runs: the library with its CVAT layer, the two entry files,
the function files, the requirements by role and the licence; no tool or test code, and not the CVAT SDK
function (``alphapose/cvat/sdk_function.py`` imports the ``cvat`` extra, which the images lack). When
every weights file a CPU function file needs is already in the weights directory (downloaded by hand when
Google Drive's quota stops the build's download), exactly those files are staged too, and the staged copy of
that function file verifies them instead of downloading (``tools.function_yaml``, ``staged``). Synthetic
random weights (``tools.synthetic_weights``, recognised by the mark inside each file) stop the staging
unless ``--allow-synthetic`` asks for a test deployment: a function built from them answers CVAT with
random skeletons.

``--calibration DIR`` stages a folder of the team's own frames with a CPU function file (its image files
only, in ``calibration/``) and makes that file run int8: its image quantizes both networks on those
frames while it is built (``tools.function_yaml``, ``calibrated``).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from alphapose.engines.calibration import CalibrationSet
from alphapose.errors import CommandLineParser, OptionError, WeightsError
from alphapose.weights.download import download_hint, is_synthetic, required_files
from tools.errors import CommandError
from tools.function_yaml import FUNCTION_FILES, REPO_ROOT, render

SOURCES = (
    "main.py",
    "model_handler.py",
    "alphapose",
    "requirements.txt",
    "requirements-weights.txt",
    "LICENSE",
)
# The make variables that ``make stage`` passes as these flags: an error names what the user typed.
MAKE_VARIABLES = {"--weights-dir": "WEIGHTS_DIR", "--file": "FUNCTION_FILE", "--calibration": "CALIBRATION"}
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.download", "*.part", "sdk_function.py")


def stage(
    directory: Path,
    function_file: str,
    weights_dir: Path,
    root: Path = REPO_ROOT,
    allow_synthetic: bool = False,
    calibration: Path | None = None,
) -> list[Path]:
    """Write the function directory; returns the weights files staged with it (none: the build downloads).

    Raises :class:`WeightsError`, before anything is written, when those files are synthetic and
    ``allow_synthetic`` is false. ``calibration``: a directory of frames staged with a CPU file, which
    then runs int8; an :class:`OptionError` on ``calibration`` when it holds no image or the file is a
    GPU one.
    """
    if function_file not in FUNCTION_FILES:
        raise ValueError(f"unknown function file {function_file}; choose one of: {', '.join(FUNCTION_FILES)}")
    variant = FUNCTION_FILES[function_file]
    needed = [weights_dir / f.name for f in required_files([variant.preset], [variant.detector])]
    # the GPU base image holds the weights; a CPU build downloads what is missing
    carried = not variant.gpu and all(path.is_file() for path in needed)
    synthetic = [path.name for path in needed if carried and is_synthetic(path)]
    if synthetic and not allow_synthetic:
        raise WeightsError(
            f"{', '.join(synthetic)} in {weights_dir} are synthetic random weights (written by python -m "
            "tools.synthetic_weights): a function deployed with them answers CVAT with random skeletons. "
            f"Download the official files ({download_hint(weights_dir, variant.preset, variant.detector)}), "
            "or, for a test deployment only, pass --allow-synthetic (make stage, deploy-local or deploy-kube "
            "with ALLOW_SYNTHETIC=1)"
        )
    frames = None if calibration is None else CalibrationSet.from_directory(calibration)
    if frames is not None and variant.gpu:
        raise OptionError(
            "calibration", str(calibration), f"int8 runs on the CPU only; {function_file} is a GPU file"
        )
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for name in SOURCES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=_IGNORED)
        else:
            shutil.copy2(source, directory / name)
    for name in FUNCTION_FILES:
        shutil.copy2(root / name, directory / name)
    if frames is not None:
        (directory / "calibration").mkdir()
        for path in frames.files:
            shutil.copyfile(path, directory / "calibration" / path.name)
    if carried:
        (directory / "weights").mkdir()
        for path in needed:
            shutil.copyfile(path, directory / "weights" / path.name)
    if carried or frames is not None:
        text = render(variant, staged=carried, calibrated=frames is not None)
        (directory / function_file).write_text(text, encoding="utf-8")
    return needed if carried else []


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandLineParser(prog="python -m tools.stage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="the staging directory (replaced)")
    parser.add_argument("--file", default="function.yaml", help="the function file to deploy")
    parser.add_argument("--weights-dir", type=Path, default=Path("weights"), help="where weights may be")
    parser.add_argument(
        "--allow-synthetic",
        action="store_true",
        help="stage synthetic random weights (python -m tools.synthetic_weights): for test deployments only",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        metavar="DIR",
        help="frames like those to annotate: the CPU function runs int8, quantized on them in its build",
    )
    parser.add_argument(
        "--make",
        action="store_true",
        help=f"name make's variables ({', '.join(MAKE_VARIABLES.values())}) in errors: make stage passes it",
    )
    args = parser.parse_args(argv)

    def typed(flag: str, value: object) -> str:
        return f"{MAKE_VARIABLES[flag]}={value}" if args.make else f"{flag} {value}"

    try:
        staged = stage(
            args.dir,
            args.file,
            args.weights_dir,
            allow_synthetic=args.allow_synthetic,
            calibration=args.calibration,
        )
    except WeightsError as exc:
        return CommandError(f"{typed('--weights-dir', args.weights_dir)}: {exc}", 1).report()
    except OptionError as exc:
        return CommandError(f"{typed('--calibration', repr(exc.value))}: {exc.problem}").report()
    except ValueError as exc:
        return CommandError(f"{typed('--file', args.file)}: {exc}").report()
    if args.calibration is not None:
        print(
            f"staged the frames of {args.calibration}: {args.file} runs int8, quantized on them in its build"
        )
    if staged:
        names = ", ".join(path.name for path in staged)
        print(
            f"staged {args.dir} with the weights from {args.weights_dir} ({names}); the build verifies them"
        )
        if any(is_synthetic(path) for path in staged):
            print("warning: the weights are synthetic random values: a test deployment only", file=sys.stderr)
    else:
        print(f"staged {args.dir}; the image build fetches the weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
