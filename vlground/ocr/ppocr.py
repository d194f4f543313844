"""The built-in engines: PP-OCR through rapidocr, on the CPU, with the models its wheel carries.

Two generations behind one interface, chosen by name (`vlground ocr --engine NAME`):

    ppocr     rapidocr 3.x with its bundled PP-OCRv6 small models (the default: lower error rates
              on every quality set at the same speed, Python 3.10-3.13)
    ppocr-v4  rapidocr-onnxruntime 1.4.4 with PP-OCRv4 (the engine of vlground 0.1; Python < 3.13,
              `pip install 'vlground[ppocr-v4]'`)

vlground drives each generation's networks itself (`vlground.ocr.reading`): detection at the
image's own resolution, the page's orientation decided before it is read (`vlground.ocr.orientation`),
recognition batched. Its layer on top is the same for both: lines in reading order (columns too),
word spaces from the pixels, look-alike fixes. No engine downloads anything: the model files are
taken from the installed package or refused.

PP-OCR's own 0/180-degree line classifier is never used: it squeezes each line into 48x192 pixels,
so a long line of small print (25 times as wide as high) came out squashed six times and was often
taken for upside down (it garbled 14 of 50 lines of 8 pt print on the document benchmark). Pages
are turned as a whole instead; `angle_cls` adds a per-line check, each line read both ways up and
the more confident reading kept, for pages with lines turned on their own."""
from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from vlground.core.results import Detection
from vlground.ocr import orientation
from vlground.ocr.confusions import fix_confusions
from vlground.ocr.engine import EngineUnavailableError, PageText
from vlground.ocr.int8 import int8_model
from vlground.ocr.layout import LAYOUTS, Piece, assemble_lines
from vlground.ocr.reading import Networks, PageReader, detect_lines

PPOCR = "ppocr"
PPOCR_V4 = "ppocr-v4"


class BuiltInEngine:
    """What both generations share: vlground drives their detection and recognition networks
    itself (the detection resolution, the page's orientation, batched recognition, characters'
    places from the recognizer's own columns) and assembles the lines; a generation only hands
    over its networks (`_networks`). `threads` caps onnxruntime's threads (1 per process when
    several worker processes share the cores); None lets it use them all."""

    name: str
    # The packages a worker process imports before it forks (vlground.jobs.executors.Processes).
    modules: tuple[str, ...]
    angle_cls: bool = False
    layout: str = "auto"  # how a page is cut into lines (vlground.ocr.layout.LAYOUTS)
    _nets: Networks  # set by each generation's constructor

    def detect(self, image: Image.Image) -> list[Piece]:
        """The bare engine's pieces (its text as it comes, rapidocr's own pipeline), image pixels:
        what vlground's layer is measured against."""
        rgb = np.asarray(_within_aspect(image.convert("RGB")))
        pieces = []
        for quad, text, score, boxes in self._read(np.ascontiguousarray(rgb[:, :, ::-1])):  # rapidocr reads BGR
            corners = np.asarray(quad, dtype=np.float64)
            centers, widths = _char_geometry(corners, text, [np.asarray(box, dtype=np.float64) for box in boxes])
            pieces.append(Piece(quad=corners, text=text, score=float(score), centers=centers, widths=widths))
        return pieces

    def read_one(self, image: Image.Image) -> PageText:
        rgb = np.asarray(_within_aspect(image.convert("RGB")))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        page = PageReader(self._nets, bgr, detect_lines(self._nets, bgr), each_line_both_ways=self.angle_cls)
        turn = orientation.decide(page.quads, page.confidence)
        pieces = page.pieces(turn.rotation)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        lines = [with_confusions_fixed(line) for line in assemble_lines(pieces, gray, self.layout)]
        return PageText(text="\n".join(line.text for line in lines), lines=lines, rotation=turn.rotation,
                        warnings=(turn.warning,) if turn.warning and lines else ())

    def read(self, images: Sequence[Image.Image]) -> list[PageText]:
        return [self.read_one(image) for image in images]

    def _read(self, bgr: np.ndarray) -> Iterable[tuple]:
        """(quad, text, score, boxes of its visible characters) per piece, as the engine gives them."""
        raise NotImplementedError


class PPOCRv6(BuiltInEngine):
    """rapidocr 3.x: PP-OCRv6 small detection and recognition (and the v2 angle classifier, loaded
    for the bare engine's own pipeline with `angle_cls`), every model path given explicitly so that
    rapidocr never reaches for its downloader. Its recognizer writes word spaces itself. vlground
    runs the recognizer with half of its convolutions in int8 (`vlground.ocr.int8`; `int8=False`:
    the float model, as rapidocr ships it); `recognizer_precision` says which runs."""

    name = PPOCR
    modules = ("rapidocr", "onnxruntime")

    def __init__(self, threads: int | None = None, angle_cls: bool = False, int8: bool = True) -> None:
        models = self.check_available()
        from rapidocr import RapidOCR

        self.angle_cls = angle_cls
        params = {"Global.log_level": "error", "Global.use_cls": angle_cls,
                  **{f"{task}.model_path": str(path) for task, path in models.items()}}
        if threads is not None:
            params |= {"EngineConfig.onnxruntime.intra_op_num_threads": threads,
                       "EngineConfig.onnxruntime.inter_op_num_threads": 1}
        self._ocr = RapidOCR(params=params)
        # rapidocr loads each model on first use; load them now, so that a broken model file stops
        # the run before its first record instead of failing every image.
        try:
            for stage in ("_load_det_model", "_load_cls_model", "_load_rec_model"):
                getattr(self._ocr, stage, lambda: None)()
            detector, recognizer = self._ocr.text_det, self._ocr.text_rec
            quantised = _int8_session(models["Rec"], threads) if int8 else None
            self.recognizer_precision = "int8" if quantised else "float32"
            self._nets = Networks(detector=detector.session, boxes=detector.postprocess_op,
                                  mean=np.asarray(detector.mean, dtype=np.float32), std=np.asarray(detector.std, dtype=np.float32),
                                  recognizer=quantised or recognizer.session, classes=recognizer.postprocess_op.character)
        except Exception as error:
            raise EngineUnavailableError(
                f"rapidocr's bundled models could not be loaded ({type(error).__name__}: {error}); "
                "reinstall them with pip install --force-reinstall 'rapidocr>=3.10,<4'") from error

    @staticmethod
    def check_available() -> dict[str, Path]:
        """The bundled model file of each stage (Det, Cls, Rec), or EngineUnavailableError saying
        what to install."""
        _require("rapidocr", "pip install 'rapidocr>=3.10,<4' onnxruntime")
        _require("onnxruntime", "pip install onnxruntime (rapidocr leaves the runtime to you)")
        folder = Path(importlib.import_module("rapidocr").__file__).parent / "models"
        models = {}
        for task, pattern in (("Det", "*_det_*.onnx"), ("Cls", "*_cls_*.onnx"), ("Rec", "*_rec_*.onnx")):
            found = sorted(folder.glob(pattern))
            if len(found) != 1:
                raise EngineUnavailableError(
                    f"rapidocr's bundled {task.lower()} model is {'missing from' if not found else 'ambiguous in'} {folder} "
                    f"({', '.join(p.name for p in found) or 'no ' + pattern}); vlground never downloads OCR models: "
                    "reinstall the wheel with pip install --force-reinstall 'rapidocr>=3.10,<4'")
            models[task] = found[0]
        return models

    def _read(self, bgr: np.ndarray) -> Iterable[tuple]:
        result = self._ocr(bgr, use_cls=self.angle_cls, return_word_box=True, return_single_char_box=True)
        if result.boxes is None or result.txts is None:
            return []
        chars = result.word_results or [()] * len(result.txts)
        return [(quad, text, score, [box for _, _, box in boxes or ()])
                for quad, text, score, boxes in zip(result.boxes, result.txts, result.scores, chars)]


class PPOCRv4(BuiltInEngine):
    """rapidocr-onnxruntime 1.4.4, whose wheel carries PP-OCRv4: English text comes without its word
    spaces, which vlground's layer puts back. No wheel for Python 3.13."""

    name = PPOCR_V4
    modules = ("rapidocr_onnxruntime",)

    def __init__(self, threads: int | None = None, angle_cls: bool = False) -> None:
        self.check_available()
        from rapidocr_onnxruntime import RapidOCR

        self.angle_cls = angle_cls
        options = {} if threads is None else {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        self._ocr = RapidOCR(**options)
        detector, recognizer = self._ocr.text_det, self._ocr.text_rec
        self._nets = Networks(detector=lambda batch: detector.infer(batch)[0], boxes=detector.postprocess_op,
                              mean=np.asarray(detector.mean, dtype=np.float32), std=np.asarray(detector.std, dtype=np.float32),
                              recognizer=lambda batch: recognizer.session(batch)[0], classes=recognizer.postprocess_op.character)

    @staticmethod
    def check_available() -> None:
        _require("rapidocr_onnxruntime",
                 "pip install 'rapidocr-onnxruntime>=1.4,<1.5' (Python 3.10-3.12), or use --engine ppocr"
                 if sys.version_info < (3, 13) else
                 "rapidocr-onnxruntime 1.4 has no release for Python 3.13: use --engine ppocr (the default), "
                 "or Python 3.10-3.12")

    def _read(self, bgr: np.ndarray) -> Iterable[tuple]:
        result, _ = self._ocr(bgr, use_cls=self.angle_cls, return_word_box=True)
        return [(quad, text, score, word_info[0] if word_info and word_info[0] is not None else [])
                for quad, text, score, *word_info in result or []]


BUILT_IN_ENGINES: dict[str, type[BuiltInEngine]] = {PPOCR: PPOCRv6, PPOCR_V4: PPOCRv4}


def is_built_in(name: str) -> bool:
    return name in BUILT_IN_ENGINES


def built_in_engine(name: str = PPOCR, threads: int | None = None, angle_cls: bool = False,
                    layout: str = "auto", int8: bool = True) -> BuiltInEngine:
    """The built-in engine called `name` (EngineUnavailableError when its package is missing);
    `angle_cls` reads each line both ways up too (see the module's docstring); `layout` is how its
    pages are cut into lines (`vlground.ocr.layout.LAYOUTS`); `int8=False` runs ppocr's recognizer
    in float32 (see `PPOCRv6`)."""
    if name not in BUILT_IN_ENGINES:
        raise ValueError(f"no built-in OCR engine {name!r}; built in: {', '.join(BUILT_IN_ENGINES)}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; layouts: {', '.join(LAYOUTS)}")
    engine = (PPOCRv6(threads=threads, angle_cls=angle_cls, int8=int8) if name == PPOCR
              else BUILT_IN_ENGINES[name](threads=threads, angle_cls=angle_cls))
    engine.layout = layout
    return engine


@dataclass(frozen=True)
class EngineSpec:
    """A built-in engine as worker processes and Ray actors are told to build it."""

    name: str = PPOCR
    angle_cls: bool = False
    layout: str = "auto"

    def build(self, threads: int | None = None) -> BuiltInEngine:
        return built_in_engine(self.name, threads=threads, angle_cls=self.angle_cls, layout=self.layout)


def _int8_session(model: Path, threads: int | None):
    """The int8 recognizer (`vlground.ocr.int8`) in an onnxruntime session made as rapidocr makes
    its own (all graph optimisations, `threads` intra-op threads) and called as rapidocr's are
    (batch in, first output out); None where it cannot be had (a damaged cached file included:
    it is removed, to be built again next time), and the float recognizer runs."""
    import onnxruntime

    built = int8_model(model)
    if built is None:
        return None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    try:
        session = onnxruntime.InferenceSession(str(built), options, providers=["CPUExecutionProvider"])
    except Exception as error:
        logging.getLogger(__name__).warning("the cached int8 recognizer %s did not load (%s); using the float one", built, error)
        built.unlink(missing_ok=True)
        return None
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def _require(module: str, advice: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise EngineUnavailableError(f"the OCR engine needs the package {module}, which is not importable here "
                                     f"({error}): {advice}") from error


# rapidocr shrinks the long side to 2000 px and fails once the short side rounds to nothing; its
# detector then scales the short side up to 736 px, so a long strip costs its aspect ratio in time.
MAX_ASPECT = 10


def _within_aspect(image: Image.Image) -> Image.Image:
    """Extreme strips padded (right or bottom, in their border colour) to MAX_ASPECT, so pixel
    coordinates stay those of the original. Text in such a strip is shrunk with it and may be lost."""
    width, height = image.size
    if max(width, height) <= MAX_ASPECT * min(width, height):
        return image
    pixels = np.asarray(image)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    size = (width, -(-width // MAX_ASPECT)) if width > height else (-(-height // MAX_ASPECT), height)
    canvas = Image.new("RGB", size, tuple(int(v) for v in np.median(border, axis=0)))
    canvas.paste(image, (0, 0))
    return canvas


def _char_geometry(quad: np.ndarray, text: str, boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """One (x, y) per character of `text` and its width along the line, from the engine's boxes of
    the visible characters (`boxes`, 4 corners each, one per non-space character). A space sits
    between its neighbours (halfway, for one), zero wide. Where the boxes do not match the text, centres go
    evenly along the middle of the piece and widths are left to the layout (None)."""
    visible = [i for i, c in enumerate(text) if not c.isspace()]
    if boxes and len(boxes) in (len(visible), len(text)) and visible:
        corners = np.stack(boxes).reshape(len(boxes), 4, 2)
        if len(boxes) == len(text):  # the engine boxed the spaces too
            visible = list(range(len(text)))
        middles = corners.mean(axis=1)
        everywhere = np.arange(len(text))  # spaces between their neighbours, the ends' at the end
        centers = np.stack([np.interp(everywhere, visible, middles[:, axis]) for axis in (0, 1)], axis=1)
        widths = np.zeros(len(text))
        widths[visible] = (np.linalg.norm(corners[:, 1] - corners[:, 0], axis=1) + np.linalg.norm(corners[:, 2] - corners[:, 3], axis=1)) / 2
        return centers, widths
    left, right = (quad[0] + quad[3]) / 2, (quad[1] + quad[2]) / 2
    steps = (np.arange(len(text)) + 0.5) / max(len(text), 1)
    return left + steps[:, None] * (right - left), None


def with_confusions_fixed(line: Detection) -> Detection:
    """The line with look-alike characters fixed, in its words too (the fixes keep word boundaries)."""
    text = fix_confusions(line.text)
    words = text.split(" ")
    if len(words) != len(line.parts):
        return replace(line, text=text)
    return replace(line, text=text, parts=tuple(replace(w, text=t) for w, t in zip(line.parts, words)))
