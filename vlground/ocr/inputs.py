"""The OCR runner's name for the input expansion, which lives in `vlground.sources` (shared by every
command); `Inputs.files` and `Inputs.unmatched` are its view of the expanded sources."""
from vlground.sources import Sources as Inputs
from vlground.sources import expand as collect_inputs
from vlground.sources import image_suffixes

__all__ = ["Inputs", "collect_inputs", "image_suffixes"]
