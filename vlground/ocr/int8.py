"""PP-OCRv6's recognizer with half of its convolutions in int8: the same reading in 4/5 of the
time on one core.

On one core the recognizer is 80% of vlground's OCR time, and 3/4 of the recognizer's time is its
convolutions. onnxruntime runs int8 convolutions (QLinearConv, fused from a QDQ graph) about twice
as fast as float ones where the CPU has AVX2 or VNNI. Which layers: the backbone's last
convolutions (`FIRST`..`LAST`, 26 of its 53); its first 27, the SVTR neck and the classifier stay
float, because quantising more lost word spaces: all convolutions, "toTuesdayat" (Liberation Serif,
30 px, upright); from Conv.9, "toTuesday" (the same turned 90 degrees); from Conv.18,
"museumwarehouse" (8 pt print on a 300 dpi page). From Conv.27 every set of
benchmarks/bench_ocr_peers.py reads exactly as with the float model.

The activation ranges were measured once on rendered lines (`python benchmarks/calibrate_ocr_int8.py`,
which rewrites `RANGES`), tied to the model file's sha256. At load the bundled float model is
quantised in memory with onnxruntime.quantization (static QDQ, per-channel weights) from those
ranges, and the result cached under CACHE (a few seconds, once per machine and version). Where
that cannot be done (the `onnx` package missing, an onnxruntime whose quantize_static takes no
calibration cache (added in 2026), a model file other than the one calibrated) the float model is
used: the same text, slower."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

RANGES = Path(__file__).parent / "data" / "ppocrv6_rec_int8.json"
# The convolutions quantised, by node name in the prepared graph (opset 13, onnxruntime's
# pre-processing): Conv.27 to Conv.52, the second half of the backbone.
FIRST, LAST = "Conv.27", "Conv.52"
OPSET = 13
CACHE = Path(os.environ.get("VLGROUND_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vlground")


def int8_model(model: Path) -> Path | None:
    """The int8 version of the recognizer `model` (built once and cached), or None where it cannot
    be built here (the reason logged): the caller then runs the float model."""
    try:
        shipped = RANGES.read_bytes()
        ranges = json.loads(shipped)
        digest = hashlib.sha256(model.read_bytes()).hexdigest()
        if ranges["model_sha256"] != digest:
            log.info("no int8 recognizer: %s is not the model the ranges were measured on", model.name)
            return None
        lacking = _lacking()
        if lacking:  # an older onnxruntime (the newest for Python 3.10 has no calibration cache): expected, so not a warning
            log.info("no int8 recognizer: %s", lacking)
            return None
        recipe = f"{digest} {FIRST} {LAST} {OPSET} {shipped.hex()} {importlib.metadata.version('onnxruntime')}"
        key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
        target = CACHE / f"{model.stem}.int8.{key}.onnx"
        if not target.is_file():
            _build(model, ranges, target)
        return target
    except Exception as error:  # any failure leaves the float model, which reads the same text
        log.warning("int8 recognizer unavailable, using the float one (%s: %s)", type(error).__name__, error)
        return None


def _prepared(model: Path, folder: Path) -> Path:
    """The model at OPSET (per-channel QDQ needs it) after onnxruntime's quantisation pre-processing."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    converted, prepared = folder / "opset.onnx", folder / "prepared.onnx"
    onnx.save(version_converter.convert_version(onnx.load(str(model)), OPSET), str(converted))
    quant_pre_process(str(converted), str(prepared), skip_symbolic_shape=True)
    return prepared


def _float_nodes(prepared: Path) -> list[str]:
    """The nodes left float: all before FIRST and after LAST."""
    import onnx

    names = [node.name for node in onnx.load(str(prepared)).graph.node]
    return names[: names.index(FIRST)] + names[names.index(LAST) + 1 :]


def _lacking() -> str | None:
    """What this install lacks to quantise from shipped ranges, or None."""
    import inspect

    try:
        from onnxruntime.quantization import quantize_static
    except ImportError as error:  # the onnx package missing
        return f"onnxruntime.quantization cannot be imported ({error})"
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        return f"onnxruntime {importlib.metadata.version('onnxruntime')}'s quantize_static takes no calibration cache"
    return None


def _quantise(prepared: Path, built: Path, ranges: Path, batches=None) -> None:
    """The prepared model quantised into `built` from the ranges file (onnxruntime's calibration
    cache); with `batches` (recognizer inputs) the ranges are measured on them and written there."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = list(batches or ())

        def get_next(self):
            return {"x": self.left.pop(0)} if self.left else None

    quantize_static(str(prepared), str(built), Batches() if batches else None, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    calibration_cache_path=str(ranges), nodes_to_exclude=_float_nodes(prepared))


def _build(model: Path, ranges: dict, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        folder = Path(tmp)
        (folder / "ranges.json").write_text(json.dumps(ranges["onnxruntime_calibration"]))
        _quantise(_prepared(model, folder), folder / "int8.onnx", folder / "ranges.json")
        os.replace(folder / "int8.onnx", target)  # atomic: a concurrent process sees the whole file or none


def calibrate(model: Path, batches: list) -> dict:
    """The activation ranges of `model` over `batches` (recognizer inputs), as RANGES stores them."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _quantise(_prepared(model, folder), folder / "int8.onnx", folder / "ranges.json", batches)
        measured = json.loads((folder / "ranges.json").read_text())
    return {"model": model.name, "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(), "onnxruntime_calibration": measured}
