"""Cleaning of broken vendor text: mojibake, HTML, whitespace, copy-pasted repeats."""

from __future__ import annotations

import pytest

from fashion.data.text import clean_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("CafÃ© crÃ¨me blouse", "Café crème blouse"),
        ("Black &amp; white", "Black & white"),
        ("<b>Silk</b>&nbsp;shirt", "Silk shirt"),
        ("Wool&amp;nbsp;coat", "Wool coat"),  # escaped twice
        ("<p>Relaxed fit.</p><p>Machine wash.</p>", "Relaxed fit. Machine wash."),
        ("<ul><li>Cotton</li><li>Linen</li></ul>", "Cotton Linen"),
        ("  Slim \t fit\n\n jeans  ", "Slim fit jeans"),
        ("Size <12 fits> nothing", "Size <12 fits> nothing"),  # not a tag
        ("Zero\u200bwidth\u00a0joiner", "Zerowidth joiner"),
    ],
)
def test_broken_strings_are_repaired(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_repeated_paragraphs_collapse() -> None:
    paragraph = "Soft cotton tee with a crew neck. Machine wash cold."
    assert clean_text(f"{paragraph}\n\n{paragraph}\n\n{paragraph}") == paragraph
    assert clean_text(f"{paragraph} Fits true to size.\n{paragraph} Fits true to size.") == (
        f"{paragraph} Fits true to size."
    )


def test_repeated_sentences_and_whole_texts_collapse() -> None:
    assert clean_text("Great dress. Great dress. great dress. Runs small.") == "Great dress. Runs small."
    assert clean_text("Red silk midi dress Red silk midi dress") == "Red silk midi dress"


def test_legitimate_repeats_are_kept() -> None:
    assert clean_text("Bora Bora swimsuit") == "Bora Bora swimsuit"
    assert clean_text("Bora Bora") == "Bora Bora"  # too short to be a paste
    text = "Lined. Two pockets. Lined hood."
    assert clean_text(text) == text


@pytest.mark.parametrize(
    "raw",
    [
        "Slim fit jeans. Machine wash.",
        "Red\r\nsilk dress\rsize 12",  # \r line breaks: ftfy turns them into \n
        "Bold \x1b[1mred\x1b[0m tee",  # terminal escapes
        "Null\x00byte\x07 and\x7f delete",  # control characters
        "Tabs\tand\nnewlines & more",
        "Form\x0cfeed",
    ],
)
def test_plain_ascii_shortcut_matches_ftfy(raw: str) -> None:
    """Plain ASCII skips ftfy; anything ftfy would change must still go through it."""
    import ftfy

    from fashion.data import text as text_clean

    assert clean_text(raw) == clean_text(ftfy.fix_text(raw))
    if text_clean._PLAIN.fullmatch(raw):
        assert ftfy.fix_text(raw) == raw
