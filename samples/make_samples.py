"""Render the sample images and their ground truth: `python samples/make_samples.py`.

Every image here is drawn by this script from the text below, in the DejaVu fonts under tests/fonts
(Bitstream Vera license, see tests/fonts/LICENSE-DejaVu.txt), so the samples are free of third-party
rights and their true text is known exactly (ground_truth.jsonl, one {"path", "text"} per image)."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from vlground.ocr.synthetic import Document, Style, degrade, render

HERE = Path(__file__).resolve().parent
FONTS = HERE.parent / "tests" / "fonts"

SAMPLES = {
    "shop_sign.png": (
        Document("sign", [[[("CORNER BAKERY", "center")], [("Fresh bread every morning", "center")], [("Open 7am - 6pm", "center")]]]),
        Style(font=str(FONTS / "DejaVuSansCondensed-Bold.ttf"), size=44, ink=(250, 245, 230), paper=(120, 40, 30)),
    ),
    "product_label.png": (
        Document("label", [[[("Product: Olive Oil", "left")], [("Weight: 500 g", "left")], [("Best before: 12/08/2027", "left")],
                            [("Batch: B-20417", "left")], [("Made in Portugal", "left")]]]),
        Style(font=str(FONTS / "DejaVuSerif.ttf"), size=28, ink=(20, 40, 110), paper=(250, 242, 215)),
    ),
    "receipt.jpg": (
        Document("receipt", [[[("CORNER CAFE", "center")], [("Receipt #4821", "center")], [("Coffee", "left"), ("3.50", "right")],
                              [("Blueberry Muffin", "left"), ("2.75", "right")], [("Orange Juice", "left"), ("4.10", "right")],
                              [("TOTAL", "left"), ("$10.35", "right")]]]),
        Style(font=str(FONTS / "DejaVuSansMono-Bold.ttf"), size=26, noise=8.0, jpeg=80),
    ),
    "notice_two_columns.png": (
        Document("columns", [
            [[("The library will be closed", "left")], [("on Monday for maintenance.", "left")], [("Books may be returned", "left")],
             [("through the slot next to", "left")], [("the main entrance.", "left")]],
            [[("Children's story time moves", "left")], [("to Tuesday at 10am in the", "left")], [("reading room. Please keep", "left")],
             [("your card with you.", "left")]],
        ]),
        Style(font=str(FONTS / "DejaVuSerif.ttf"), size=24),
    ),
}


def tilted_photo() -> tuple[Image.Image, str]:
    """A street sign photographed at an angle: rotated, blurred, noisy, JPEG."""
    document = Document("sign", [[[("Station Road", "center")], [("Platform 4", "center")]]])
    style = Style(font=str(FONTS / "DejaVuSans-Oblique.ttf"), size=48, ink=(255, 255, 255), paper=(25, 70, 140))
    image = render(document, style).rotate(6, expand=True, fillcolor=(90, 90, 85), resample=Image.BICUBIC)
    return degrade(image, Style(noise=10.0, blur=0.8, jpeg=75)), document.truth


def main() -> None:
    truths = []
    for name, (document, style) in SAMPLES.items():
        render(document, style).save(HERE / name, optimize=True)
        truths.append({"path": name, "text": document.truth})
    image, truth = tilted_photo()
    image.save(HERE / "street_sign_photo.jpg", quality=85)
    truths.append({"path": "street_sign_photo.jpg", "text": truth})
    with open(HERE / "ground_truth.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in truths)


if __name__ == "__main__":
    main()
