"""The Qwen-VL (v1) tokenizer: tiktoken BPE over the checkpoint's `qwen.tiktoken`, the release's split
pattern, and the special tokens at their release ids (<|endoftext|> 151643 ... <imgpad> 151859).

Images are not spelled into the text: a prompt marks the image with IMAGE_SLOT (`<img></img>`) and the
tokenizer puts <img>, 256 <imgpad> placeholders and </img> there; the model writes the image features
over the placeholders."""
from __future__ import annotations

import base64
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import tiktoken

from vlground.prompts import IMAGE_SLOT

TIKTOKEN_FILE = "qwen.tiktoken"
SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
GROUNDING_TAGS = ("<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>")
IMAGE_START, IMAGE_END, IMAGE_PAD = "<img>", "</img>", "<imgpad>"
FIRST_SPECIAL_ID = 151643  # the release's ids follow its 151643 BPE ranks; kept whatever the ranks file
SPECIAL_TOKENS = {
    token: FIRST_SPECIAL_ID + index
    for index, token in enumerate(
        (ENDOFTEXT, IM_START, IM_END, *(f"<|extra_{i}|>" for i in range(205)), *GROUNDING_TAGS,
         IMAGE_START, IMAGE_END, IMAGE_PAD)
    )
}
IMAGE_TOKENS = 256
SYSTEM_PROMPT = "You are a helpful assistant."


def read_ranks(path: Path) -> dict[bytes, int]:
    """BPE ranks from a tiktoken file: one `base64(token) rank` per line."""
    ranks = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as error:
            raise ValueError(f"{path}:{number}: not a `base64 rank` line of a tiktoken file") from error
    return ranks


@dataclass(frozen=True)
class EncodedPrompt:
    """Token ids of one prompt and the index of its <img> token."""

    ids: list[int]
    image_start: int


class QwenVLTokenizer:
    def __init__(self, ranks: dict[bytes, int]):
        if len(set(range(256)) - {r[0] for r in ranks if len(r) == 1}) or max(ranks.values()) >= FIRST_SPECIAL_ID:
            raise ValueError("a Qwen-VL tiktoken file needs every single byte and ranks below 151643")
        self.encoding = tiktoken.Encoding(
            "qwen-vl", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens=SPECIAL_TOKENS
        )
        self.known_ids = set(ranks.values())
        self.grounding_ids = {SPECIAL_TOKENS[t] for t in GROUNDING_TAGS}
        self.eod_id = SPECIAL_TOKENS[ENDOFTEXT]
        self.im_start_id = SPECIAL_TOKENS[IM_START]
        self.im_end_id = SPECIAL_TOKENS[IM_END]

    @classmethod
    def from_checkpoint(cls, folder: Path) -> QwenVLTokenizer:
        path = Path(folder) / TIKTOKEN_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} has no {TIKTOKEN_FILE}; it ships with every Qwen-VL checkpoint")
        return cls(read_ranks(path))

    def encode(self, text: str, specials: frozenset[str] | set[str] = frozenset(GROUNDING_TAGS)) -> list[int]:
        """Ids of `text` (NFC-normalized); the special tokens named in `specials` become their ids, any
        other special token's spelling is encoded as plain text."""
        return self.encoding.encode(unicodedata.normalize("NFC", text), allowed_special=set(specials), disallowed_special=())

    def image_ids(self) -> list[int]:
        return [SPECIAL_TOKENS[IMAGE_START], *[SPECIAL_TOKENS[IMAGE_PAD]] * IMAGE_TOKENS, SPECIAL_TOKENS[IMAGE_END]]

    def _around_image(self, before: list[int], after: list[int]) -> EncodedPrompt:
        return EncodedPrompt([*before, *self.image_ids(), *after], len(before))

    def raw_prompt(self, text: str) -> EncodedPrompt:
        """A base-model prefix completion: `text` is the whole input with exactly one IMAGE_SLOT where
        the image goes; every special token except the image tags is read as such."""
        if text.count(IMAGE_SLOT) != 1:
            raise ValueError(f"a Qwen-VL base-model prompt needs exactly one {IMAGE_SLOT} where the image goes: {text!r}")
        specials = set(SPECIAL_TOKENS) - {IMAGE_START, IMAGE_END, IMAGE_PAD}
        before, after = text.split(IMAGE_SLOT)
        return self._around_image(self.encode(before, specials), self.encode(after, specials))

    def chat_prompt(self, text: str, system: str = SYSTEM_PROMPT) -> EncodedPrompt:
        """The release's ChatML for one user turn, `Picture 1: <img>...</img>\n{text}`, ending where the
        assistant's answer starts. Grounding tags in `text` are read as special tokens; any other
        special token's spelling (<|im_end|>, <img>) stays plain text."""
        newline = self.encode("\n")

        def turn_start(role: str) -> list[int]:
            return [self.im_start_id, *self.encode(role), *newline]

        before = [*turn_start("system"), *self.encode(system), self.im_end_id, *newline, *turn_start("user"),
                  *self.encode("Picture 1: ")]
        after = [*self.encode(f"\n{text}"), self.im_end_id, *newline, *turn_start("assistant")]
        return self._around_image(before, after)

    def stop_ids(self, chat: bool) -> set[int]:
        """Tokens that end an answer: <|endoftext|>, and in chat also <|im_end|> and <|im_start|>."""
        return {self.eod_id, self.im_end_id, self.im_start_id} if chat else {self.eod_id}

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids: grounding tags kept, control tokens and ids outside the vocabulary
        (the embedding rows past the last special token) dropped."""
        kept = [i for i in ids if i in self.known_ids or i in self.grounding_ids]
        return self.encoding.decode(kept, errors="replace")
