"""The demo's overview picture: labelled sections of labelled image groups, readable at a glance.

Each section (one task) has a title line; below it its examples side by side, each example a group of
tiles with a caption above and a label under every tile ("input", "estimate", "ground truth", ...), so an
estimate always sits beside its ground truth.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TILE = 128  # pixels per tile side (64x64 images are zoomed 2x, nearest neighbour)
GAP, GROUP_GAP, MARGIN = 4, 24, 16
FONT_SIZE, TITLE_SIZE = 13, 18
BACKGROUND, INK, MUTED = (255, 255, 255), (20, 20, 20), (90, 90, 90)


@dataclass
class Example:
    """One example: ``caption`` (wrapped over the group's width; "\\n" starts a new line) and ``tiles``, (label, uint8 (H, W, 3)) pairs."""

    caption: str
    tiles: list[tuple[str, np.ndarray]]


@dataclass
class Section:
    """One task: ``title`` and its examples, drawn left to right."""

    title: str
    examples: list[Example] = field(default_factory=list)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()


def _caption_lines(text: str, width_px: int, font_size: int) -> list[str]:
    """``text`` wrapped to ``width_px``; a newline in it always starts a new line."""
    width = max(8, int(width_px / (0.55 * font_size)))
    return [line for part in text.split("\n") for line in (textwrap.wrap(part, width=width) or [""])]


def _rows(widths: list[int], max_width: int) -> list[list[int]]:
    """Indices of the examples on each line: as many as fit in ``max_width`` (at least one per line)."""
    rows, used = [[]], 0
    for i, w in enumerate(widths):
        if rows[-1] and used + GROUP_GAP + w > max_width:
            rows.append([])
            used = 0
        used += w + (GROUP_GAP if rows[-1] else 0)
        rows[-1].append(i)
    return rows


def render_overview(sections: list[Section], tile: int = TILE, max_width: int = 1400) -> Image.Image:
    """Draw ``sections`` one under another, each example group flowing onto new lines past ``max_width``
    pixels; returns an RGB image.

    Raises ValueError for a section without examples or an example without tiles.
    """
    font, title_font = _font(FONT_SIZE), _font(TITLE_SIZE)
    line = FONT_SIZE + 4
    content = max_width - 2 * MARGIN
    plans = []  # (title, [(examples with widths, caption rows)] per line)
    for section in sections:
        if not section.examples or any(not e.tiles for e in section.examples):
            raise ValueError(f"section {section.title!r} needs examples with at least one tile each")
        widths = [len(e.tiles) * tile + (len(e.tiles) - 1) * GAP for e in section.examples]
        lines = []
        for row in _rows(widths, content):
            group = [(section.examples[i], widths[i]) for i in row]
            lines.append((group, max(len(_caption_lines(e.caption, w, FONT_SIZE)) for e, w in group)))
        plans.append((section.title, lines))
    row_height = lambda caption_rows: caption_rows * line + tile + line + GROUP_GAP // 2  # noqa: E731
    width = 2 * MARGIN + max(sum(w for _, w in group) + GROUP_GAP * (len(group) - 1) for _, lines in plans for group, _ in lines)
    height = MARGIN + sum(TITLE_SIZE + 8 + sum(row_height(c) for _, c in lines) + GROUP_GAP // 2 for _, lines in plans)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = MARGIN
    for title, lines in plans:
        draw.text((MARGIN, y), title, fill=INK, font=title_font)
        y += TITLE_SIZE + 8
        for group, caption_rows in lines:
            x = MARGIN
            for example, w in group:
                for k, text in enumerate(_caption_lines(example.caption, w, FONT_SIZE)):
                    draw.text((x, y + k * line), text, fill=INK, font=font)
                tiles_y = y + caption_rows * line
                for j, (label, image) in enumerate(example.tiles):
                    tx = x + j * (tile + GAP)
                    canvas.paste(Image.fromarray(np.asarray(image, np.uint8)).resize((tile, tile), Image.NEAREST), (tx, tiles_y))
                    draw.text((tx, tiles_y + tile + 2), label, fill=MUTED, font=font)
                x += w + GROUP_GAP
            y += row_height(caption_rows)
        y += GROUP_GAP // 2
    return canvas
