"""The official ScreenSpot evaluation loops, restated for the tests: `vlground eval screenspot` must give
what these give on every breakdown.

Restated in our own words from the released scripts, step for step where the result depends on it:
- SeeClick (njucckevin/SeeClick, pretrain/screenspot_test.py with pretrain/process_utils.py), per
  platform file: the box [x, y, w, h] becomes corners, then fractions of the image's stored size
  (`PIL.Image.open(path).size`); a response holding "box" clicks the centre of its first
  `<box>(x,y),(x,y)</box>` divided by 1000, any other response its numbers (`-?\\d+\\.?\\d*`, two of
  them, or the centre of four); the click hits when inside the box, edges included; an exception
  anywhere in reading it is "wrong format" and a miss; text accuracy counts data_type "text",
  icon accuracy every other type.
- ScreenSpot-Pro (likaixin2000/ScreenSpot-Pro-GUI-Grounding, eval_screenspot_pro.py): the model
  wrapper returns a click in fractions of the image or None; the box [x1, y1, x2, y2] is divided by
  the item's `img_size`; None is "wrong_format", the same inclusive test decides "correct" or
  "wrong"; metrics (correct / total, text and icon accuracy by ui_type) per application group,
  per application, per platform (with instruction style and ground-truth type, here always
  "instruction" and "positive") and overall.
- The model wrappers' reading of an answer into fractions, as ScreenSpot-Pro's qwen2_5vl.py does it
  for the computer-use tool call (coordinate / resized size, a box's centre first), and the same
  rule for the answer forms vlground's families write (x / the frame's extent)."""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

from PIL import Image


# --- SeeClick ---------------------------------------------------------------------------------


def seeclick_point(response: str) -> list[float]:
    """process_utils.pred_2_point: raises (as the original does, by a name never bound) unless the
    response holds exactly two or four numbers."""
    numbers = [float(v) for v in re.findall(r"-?\d+\.?\d*", response)]
    if len(numbers) == 2:
        return numbers
    if len(numbers) == 4:
        return [(numbers[0] + numbers[2]) / 2, (numbers[1] + numbers[3]) / 2]
    raise UnboundLocalError("click_point")


def seeclick_click(response: str) -> list[float]:
    """The click screenspot_test.py takes from a response, in fractions of the image."""
    if "box" in response:
        found = re.findall(r"<box>\((\d+,\d+)\),\((\d+,\d+)\)</box>", response)
        corners = [(int(p.split(",")[0]), int(p.split(",")[1])) for p in sum(found, ())]
        centre = [(corners[0][0] + corners[1][0]) / 2, (corners[0][1] + corners[1][1]) / 2]  # IndexError: wrong format
        return [v / 1000 for v in centre]
    return seeclick_point(response)


def seeclick_loop(annotations: str, images: str, answer: Callable[[str, int, dict], object],
                  tasks=("mobile", "desktop", "web"), suffix: str = "") -> dict:
    """Per task: number of targets, correct, wrong format, action / text / icon accuracy.
    `answer(task, index, item)` is the model's response; `seeclick_click` reads a string, and a
    list is taken as the click itself (a wrapper that already read it)."""
    results = {}
    for task in tasks:
        items = json.load(open(os.path.join(annotations, f"screenspot_{task}{suffix}.json")))
        total = correct = wrong_format = 0
        text_hits, icon_hits = [], []
        for j, item in enumerate(items):
            total += 1
            width, height = Image.open(os.path.join(images, item["img_filename"])).size
            x, y, w, h = item["bbox"]
            box = [x / width, y / height, (x + w) / width, (y + h) / height]
            kind = text_hits if item["data_type"] == "text" else icon_hits
            try:
                response = answer(task, j, item)
                click = seeclick_click(response) if isinstance(response, str) else list(response)
                if (box[0] <= click[0] <= box[2]) and (box[1] <= click[1] <= box[3]):
                    correct += 1
                    kind.append(1)
                else:
                    kind.append(0)
            except Exception:  # the original's bare except: anything that goes wrong is a wrong format
                wrong_format += 1
                kind.append(0)
        results[task] = {
            "n": total, "correct": correct, "wrong_format": wrong_format, "accuracy": correct / total,
            "text_accuracy": sum(text_hits) / len(text_hits) if text_hits else 0,
            "icon_accuracy": sum(icon_hits) / len(icon_hits) if icon_hits else 0,
        }
    return results


# --- ScreenSpot-Pro ---------------------------------------------------------------------------


def pro_correctness(sample: dict, point) -> str:
    if point is None:
        return "wrong_format"
    width, height = sample["img_size"]
    x1, y1, x2, y2 = sample["bbox"]
    box = [x1 / width, y1 / height, x2 / width, y2 / height]
    if (box[0] <= point[0] <= box[2]) and (box[1] <= point[1] <= box[3]):
        return "correct"
    return "wrong"


def pro_metrics(results: list[dict]) -> dict:
    total = len(results)
    correct = sum(r["correctness"] == "correct" for r in results)
    texts = [r for r in results if r["ui_type"] == "text"]
    icons = [r for r in results if r["ui_type"] == "icon"]
    return {
        "n": total, "correct": correct, "wrong_format": sum(r["correctness"] == "wrong_format" for r in results),
        "accuracy": correct / total if total else 0,
        "text_accuracy": sum(r["correctness"] == "correct" for r in texts) / len(texts) if texts else 0,
        "icon_accuracy": sum(r["correctness"] == "correct" for r in icons) / len(icons) if icons else 0,
    }


def pro_loop(annotations: str, point_of: Callable[[dict], object]) -> dict:
    """Every annotation file's samples (positive, instruction style, English), scored; the report's
    leaderboard styles (by group, by application), the SeeClick style (by platform) and overall.
    `point_of(sample)` is the wrapper's click in fractions, or None."""
    results = []
    for name in sorted(f for f in os.listdir(annotations) if f.endswith(".json")):
        for sample in json.load(open(os.path.join(annotations, name))):
            results.append({"group": sample.get("group"), "platform": sample["platform"], "application": sample["application"],
                            "ui_type": sample["ui_type"], "correctness": pro_correctness(sample, point_of(sample))})

    def by(key):
        return {value: pro_metrics([r for r in results if r[key] == value]) for value in {r[key] for r in results}}

    return {"groups": by("group"), "applications": by("application"), "platforms": by("platform"), "overall": pro_metrics(results)}


# --- the wrappers' reading of an answer --------------------------------------------------------


def qwen25vl_tool_call_point(response: str, resized: tuple[int, int]):
    """ScreenSpot-Pro models/qwen2_5vl.py: the JSON between "<tool_call>\\n" and "\\n</tool_call>",
    its coordinate of two numbers (or four: their centre) divided by the resized input size; None
    where that fails."""
    try:
        action = json.loads(response.split("<tool_call>\n")[1].split("\n</tool_call>")[0])
        coordinates = action["arguments"]["coordinate"]
        if len(coordinates) == 2:
            x, y = coordinates
        elif len(coordinates) == 4:
            x, y = (coordinates[0] + coordinates[2]) / 2, (coordinates[1] + coordinates[3]) / 2
        else:
            raise ValueError("Wrong output format")
        return [x / resized[0], y / resized[1]]
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def json_point(response: str, extent: tuple[float, float]):
    """A Qwen JSON answer's first "point_2d" (or "bbox_2d": its centre) divided by the frame's extent
    (the resized input for Qwen2.5-VL, 1000 for Qwen3-VL), the wrappers' rule; None without one."""
    try:
        item = json.loads(response)[0]
    except (ValueError, IndexError, KeyError, TypeError):
        return None
    if "point_2d" in item:
        x, y = item["point_2d"]
    elif "bbox_2d" in item:
        x1, y1, x2, y2 = item["bbox_2d"]
        x, y = (x1 + x2) / 2, (y1 + y2) / 2
    else:
        return None
    return [x / extent[0], y / extent[1]]
