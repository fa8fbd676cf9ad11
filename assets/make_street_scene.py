"""Draw the synthetic street scene assets/synthetic_street.png (480 x 360) with OpenCV.

The project's own example image (CamVid images may not be copied into the repository). Deterministic:
`python assets/make_street_scene.py` rewrites the same pixels.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

HEIGHT, WIDTH = 360, 480
HORIZON = 170


def street_scene(seed: int = 0) -> np.ndarray:
    """(360, 480, 3) uint8 RGB: sky, buildings with windows, trees, road with lanes, pavement, car, pole."""
    rng = np.random.default_rng(seed)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for y in range(HORIZON):  # sky: light blue gradient
        t = y / HORIZON
        image[y] = (int(120 + 90 * t), int(170 + 60 * t), 235)
    image[HORIZON - 30:HORIZON + 20] = (165, 160, 170)  # distant buildings behind the trees
    for x0, width, height, colour in ((0, 120, 150, (150, 110, 90)), (120, 70, 110, (190, 180, 160)),
                                      (330, 150, 160, (120, 100, 110))):
        top = HORIZON + 20 - height
        cv2.rectangle(image, (x0, top), (x0 + width, HORIZON + 20), colour, -1)
        for wy in range(top + 10, HORIZON + 5, 22):
            for wx in range(x0 + 8, x0 + width - 14, 20):
                cv2.rectangle(image, (wx, wy), (wx + 10, wy + 12), (70, 80, 100), -1)
    for cx, cy, r in ((215, 130, 34), (265, 140, 28), (300, 125, 30)):
        cv2.line(image, (cx, cy + r - 5), (cx, HORIZON + 25), (90, 60, 40), 6)
        for _ in range(40):
            dx, dy = rng.normal(0, r / 2.2, 2)
            shade = int(rng.integers(90, 150))
            cv2.circle(image, (int(cx + dx), int(cy + dy)), int(r / 3), (40, shade, 40), -1)
    image[HORIZON + 20:] = (150, 150, 145)  # pavement
    road = np.array(
        [
            [200, HORIZON + 20],
            [280, HORIZON + 20],
            [WIDTH, HEIGHT - 40],
            [WIDTH, HEIGHT],
            [0, HEIGHT],
            [0, HEIGHT - 40],
        ],
        np.int32,
    )
    cv2.fillPoly(image, [road], (95, 90, 100))
    for i in range(6):  # dashed centre line in perspective
        t0, t1 = i / 6, (i + 0.5) / 6
        y0, y1 = int(HORIZON + 20 + t0 ** 1.5 * 170), int(HORIZON + 20 + t1 ** 1.5 * 170)
        cv2.line(image, (240, y0), (240, y1), (235, 235, 225), max(1, int(1 + 6 * t1)))
    cv2.rectangle(image, (300, 230), (420, 290), (40, 60, 160), -1)  # car body
    cv2.rectangle(image, (320, 205), (395, 235), (60, 80, 170), -1)  # cabin
    cv2.rectangle(image, (328, 210), (387, 230), (170, 200, 220), -1)  # windows
    for wx in (325, 395):
        cv2.circle(image, (wx, 292), 14, (20, 20, 20), -1)
    cv2.line(image, (110, 60), (110, 260), (180, 180, 170), 4)  # pole with a sign
    cv2.circle(image, (110, 70), 14, (200, 30, 30), -1)
    cv2.circle(image, (110, 70), 8, (240, 240, 240), -1)
    noise = rng.normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


if __name__ == "__main__":
    path = Path(__file__).with_name("synthetic_street.png")
    cv2.imwrite(str(path), cv2.cvtColor(street_scene(), cv2.COLOR_RGB2BGR))
    print(f"wrote {path}")
