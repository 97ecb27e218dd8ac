"""Vendor text: titles, descriptions and label cells with the noise real feeds have."""

from __future__ import annotations

import random
from dataclasses import dataclass

from fashion.catalog.info import ATTRIBUTES
from fashion.catalog.products import _COLORS, _Product

# ---------------------------------------------------------------------------------------------
# vendor text


@dataclass(frozen=True)
class _Vendor:
    name: str
    brands: tuple[str, ...]
    habit: str  # clean | synonyms | caps | html | mojibake | copypasta | typos | terse


_VENDORS: tuple[_Vendor, ...] = (
    _Vendor("northwind", ("Northwind Apparel", "Northwind Basics"), "clean"),
    _Vendor("maison_verte", ("Maison Verte", "Atelier Rubis"), "synonyms"),
    _Vendor("urban_stock", ("Urban Stock Co", "US Co"), "caps"),
    _Vendor("lumen", ("Lumen & Co.", "Lumen Studio"), "html"),
    _Vendor("cafe_creme", ("Café Crème Paris", "Crème de la Mode"), "mojibake"),
    _Vendor("bulkbuy", ("BulkBuy Outlet", "BulkBuy Value"), "copypasta"),
    _Vendor("quickthreads", ("QuickThreads", "Quick Threads Kids & Adults"), "typos"),
    _Vendor("mnml", ("MNML Supply", "mnml"), "terse"),
)

_COLOR_WORDS = {
    "red": ("Red",),
    "white": ("White",),
    "black": ("Black",),
    "blue": ("Blue",),
    "green": ("Green",),
    "yellow": ("Yellow",),
    "pink": ("Pink",),
    "grey": ("Grey", "Gray"),
}
_COLOR_SYNONYMS = {
    "red": ("Ruby", "Crimson", "Scarlet", "Cherry", "Burgundy"),
    "white": ("Cream", "Ivory", "Off White", "Snow"),
    "black": ("Onyx", "Jet Black", "Ebony", "Ink"),
    "blue": ("Navy", "Cobalt", "Azure", "Denim"),
    "green": ("Emerald", "Olive", "Sage", "Mint"),
    "yellow": ("Mustard", "Lemon", "Canary", "Saffron"),
    "pink": ("Blush", "Rose", "Fuchsia", "Coral"),
    "grey": ("Charcoal", "Slate", "Heather", "Ash"),
}
_COLOR_FANCY = {  # marketing names that no taxonomy knows
    "red": ("Sunset", "Lava"),
    "white": ("Cloud", "Whisper"),
    "black": ("Midnight", "Shadow"),
    "blue": ("Lagoon", "Horizon"),
    "green": ("Meadow", "Leaf"),
    "yellow": ("Sunbeam", "Lemonade"),
    "pink": ("Candyfloss", "Sorbet"),
    "grey": ("Storm", "Pebble"),
}
_COLOR_FRENCH = {
    "red": "Rouge",
    "white": "Crème",
    "black": "Noir",
    "blue": "Bleu",
    "green": "Vert",
    "yellow": "Jaune",
    "pink": "Rosé",
    "grey": "Gris",
}
_CATEGORY_WORDS = {
    "t_shirt": ("T-Shirt", "Tee", "T-shirt", "Crew Neck Tee"),
    "shirt": ("Shirt", "Oxford Shirt", "Button-Down Shirt", "Poplin Shirt"),
    "dress": ("Dress", "Midi Dress", "Maxi Dress", "Mini Dress", "Wrap Dress"),
    "pants": ("Pants", "Trousers", "Chinos", "Wide Leg Pants"),
    "skirt": ("Skirt", "Midi Skirt", "Mini Skirt", "Pleated Skirt"),
    "jacket": ("Jacket", "Bomber Jacket", "Parka", "Coat"),
    "sweater": ("Sweater", "Jumper", "Pullover", "Cardigan"),
}
_CATEGORY_STYLED = {
    ("shirt", "formal"): ("Dress Shirt",),
    ("pants", "formal"): ("Slacks", "Tailored Trousers"),
    ("pants", "sporty"): ("Joggers", "Track Pants"),
    ("skirt", "formal"): ("Pencil Skirt",),
    ("jacket", "formal"): ("Blazer",),
    ("jacket", "sporty"): ("Track Jacket", "Windbreaker"),
    ("sweater", "sporty"): ("Hoodie", "Sweatshirt"),
    ("dress", "formal"): ("Sheath Dress", "Cocktail Dress"),
    ("t_shirt", "sporty"): ("Training Tee",),
}
_CATEGORY_SYNONYMS = {
    "t_shirt": ("Tee", "Tee Shirt"),
    "shirt": ("Blouse", "Button Up"),
    "dress": ("Frock", "Gown", "Sundress"),
    "pants": ("Trousers", "Slacks", "Chinos"),
    "skirt": ("Skirt", "Skort"),
    "jacket": ("Blazer", "Overcoat", "Anorak"),
    "sweater": ("Jumper", "Pullover", "Knit"),
}
_CATEGORY_FRENCH = {
    "t_shirt": "Tee",
    "shirt": "Chemise",
    "dress": "Robe",
    "pants": "Pantalon",
    "skirt": "Jupe",
    "jacket": "Veste",
    "sweater": "Pull",
}
_CATEGORY_VAGUE = {
    "t_shirt": ("Top", "Essential"),
    "shirt": ("Top", "Essential"),
    "dress": ("Piece", "Look"),
    "pants": ("Bottoms", "Essential"),
    "skirt": ("Bottoms", "Piece"),
    "jacket": ("Layer", "Outer Layer"),
    "sweater": ("Layer", "Top"),
}
_PATTERN_WORDS = {
    ("striped", "fine"): ("Pinstripe", "Pinstriped", "Fine Stripe"),
    ("striped", "coarse"): ("Striped", "Stripe", "Breton Stripe", "Bold Stripe"),
    ("polka_dot", "fine"): ("Micro-Dot", "Pin Dot"),
    ("polka_dot", "coarse"): ("Polka Dot", "Dotted", "Spotted"),
    ("plaid", "fine"): ("Gingham", "Mini Check"),
    ("plaid", "coarse"): ("Plaid", "Tartan", "Check"),
    ("floral", "fine"): ("Ditsy Floral", "Ditsy Print"),
    ("floral", "coarse"): ("Floral", "Flower Print"),
    ("solid", ""): ("Solid", "Plain"),
}
_SLEEVE_WORDS = {
    "sleeveless": ("Sleeveless",),
    "short": ("Short Sleeve", "Short-Sleeved"),
    "long": ("Long Sleeve", "Long-Sleeved"),
}
_STYLE_WORDS = {
    "casual": ("Casual", "Relaxed", "Everyday", "Weekend"),
    "formal": ("Formal", "Tailored", "Elegant", "Business"),
    "sporty": ("Sporty", "Athletic", "Performance", "Active"),
}
_STYLE_SENTENCES = {
    "casual": (
        "An easy everyday piece for relaxed weekends.",
        "Casual and comfortable, made for off-duty days.",
        "Laid-back style you will reach for every day.",
    ),
    "formal": (
        "Tailored for the office and formal evenings.",
        "An elegant choice for business meetings and weddings.",
        "Sharp, polished and ready for formal occasions.",
    ),
    "sporty": (
        "Built for training days and athletic performance.",
        "Sporty and breathable, ready for your next workout.",
        "Made for the gym, the track and everything in between.",
    ),
}
_COLOR_SENTENCES = (
    "{this} {noun} {comes} in {color}.",
    "Shown here in {color}.",
    "Available in a rich {color} shade.",
    "A {color} {noun} for every wardrobe.",
)
_NOUN_SENTENCES = (
    "Our {noun}, cut for a clean silhouette.",
    "A {noun} you will wear on repeat.",
    "The {noun} of the season, designed with a modern fit.",
    "Finished with neat seams, this {noun} is built to last.",
)
_FILLER = (
    "Machine washable at 30 degrees.",
    "Soft and comfortable all day long.",
    "Model is 178 cm tall and wears size M.",
    "Made from 100% organic cotton.",
    "Crafted from a soft, durable blend.",
    "True to size; order your usual.",
    "Part of our new season collection.",
    "Imported.",
)
_FRENCH_FLAIR = (
    "Une pièce élégante, très chic.",
    "Designed in Paris with savoir-faire — a café classic.",
    "Naïve, fresh and très française.",
    "Qualité supérieure, façon atelier.",
    "It’s the crème de la crème of the season.",
)
_BOILERPLATE = (
    "Free shipping on orders over $50!",
    "Buy 2 get 1 free — limited time only.",
    "Check out our other listings for more great deals.",
)


def _mojibake(text: str) -> str:
    """UTF-8 bytes read back as Windows-1252 (or Latin-1): "Café" -> "CafÃ©"."""
    raw = text.encode("utf-8")
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _typos(rng: random.Random, text: str, rate: float) -> str:
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) < 4 or not word.isalpha() or rng.random() >= rate:
            continue
        k = rng.randrange(1, len(word) - 1)
        kind = rng.randrange(3)
        if kind == 0:
            word = word[:k] + word[k + 1 :]  # drop a letter
        elif kind == 1:
            word = word[:k] + word[k + 1] + word[k] + word[k + 2 :]  # swap two letters
        else:
            word = word[:k] + word[k] + word[k:]  # double a letter
        words[i] = word
    return " ".join(words)


def _htmlify(rng: random.Random, text: str) -> str:
    text = text.replace(" and ", " &amp; ")
    words = text.split(" ")
    k = rng.randrange(len(words))
    words[k] = f"<b>{words[k]}</b>"
    out = words[0]
    nbsp = {rng.randrange(1, len(words))} if len(words) > 1 else set()
    for i, word in enumerate(words[1:], start=1):
        out += ("&nbsp;" if i in nbsp else " ") + word
    html = f"<p>{out.replace('. ', '.<br> ', 1)}</p>"
    if rng.random() < 0.4:
        html += "<ul><li>Machine wash cold</li><li>Imported &amp; fair made</li></ul>"
    elif "&" not in html:
        html += "<p>Care:&nbsp;machine wash</p>"
    return html


def _write_text(rng: random.Random, p: _Product, vendor: _Vendor) -> None:
    habit = vendor.habit
    mentions: set[str] = set()

    # words for each attribute, by vendor habit
    roll = rng.random()
    color_word: str | None = None
    color_ok = True
    if habit == "mojibake" and roll < 0.8:
        color_word = _COLOR_FRENCH[p.color]
    elif habit == "synonyms" and roll < 0.9:
        color_word = rng.choice(_COLOR_SYNONYMS[p.color])
    elif roll < 0.7:
        color_word = rng.choice(_COLOR_WORDS[p.color])
    elif roll < 0.82:
        color_word = rng.choice(_COLOR_SYNONYMS[p.color])
    elif roll < 0.92:
        color_word, color_ok = rng.choice(_COLOR_FANCY[p.color]), False  # no taxonomy knows it
    elif roll < 0.94:  # the vendor got it wrong
        color_word = rng.choice(_COLOR_WORDS[rng.choice([c for c in _COLORS if c != p.color])])
        color_ok = False
    if color_word and color_ok:
        mentions.add("color")

    if habit == "mojibake" and rng.random() < 0.6:
        category_word = _CATEGORY_FRENCH[p.category]
    elif habit == "synonyms" and rng.random() < 0.6:
        category_word = rng.choice(_CATEGORY_SYNONYMS[p.category])
    elif rng.random() < 0.07:
        category_word = rng.choice(_CATEGORY_VAGUE[p.category])
    elif (p.category, p.style) in _CATEGORY_STYLED and rng.random() < 0.5:
        category_word = rng.choice(_CATEGORY_STYLED[(p.category, p.style)])
    else:
        category_word = rng.choice(_CATEGORY_WORDS[p.category])
    if category_word not in _CATEGORY_VAGUE[p.category]:
        mentions.add("category")

    pattern_word = None
    if rng.random() < (0.12 if p.pattern == "solid" else 0.3):
        pattern_word = rng.choice(_PATTERN_WORDS[(p.pattern, p.scale)])
        mentions.add("pattern")
    sleeve_word = None
    if p.sleeve_length and rng.random() < 0.3:
        sleeve_word = rng.choice(_SLEEVE_WORDS[p.sleeve_length])
        if p.category == "t_shirt" and p.sleeve_length == "sleeveless" and rng.random() < 0.5:
            sleeve_word, category_word = None, "Tank Top"
        mentions.add("sleeve_length")
    style_mode = rng.random()  # < .25: in title, < .55: a sentence, else not mentioned
    if style_mode < 0.55:
        mentions.add("style")
    in_title = {"category", "sleeve_length"} & mentions if category_word == "Tank Top" else set()
    in_title |= {"category"} & mentions

    # title: [style] [color] [pattern] [sleeve] category
    parts: list[str] = []
    if style_mode < 0.25:
        parts.append(rng.choice(_STYLE_WORDS[p.style]))
        in_title.add("style")
    color_in_title = color_word is not None and (rng.random() < 0.75 or habit == "terse")
    if color_in_title and color_word:
        parts.append(color_word)
        in_title |= {"color"} & mentions
    if pattern_word and (rng.random() < 0.6 or habit == "terse"):
        parts.append(pattern_word)
        pattern_word = None
        in_title.add("pattern")
    if sleeve_word and (rng.random() < 0.5 or habit == "terse"):
        parts.append(sleeve_word)
        sleeve_word = None
        in_title.add("sleeve_length")
    parts.append(category_word)
    title = " ".join(parts)
    if habit == "mojibake" and rng.random() < 0.5:
        title += " « Édition Café »"

    # description: one to three sentences carrying what the title left out
    sentences: list[str] = []
    noun = category_word.lower()
    plural = noun.endswith("s") and not noun.endswith("ss")
    if not color_in_title and color_word:
        template = rng.choice(_COLOR_SENTENCES)
        this, comes = ("These", "come") if plural else ("This", "comes")
        sentences.append(
            template.format(noun=noun, color=color_word.lower(), this=this, comes=comes)
        )
    elif rng.random() < 0.5:
        sentences.append(rng.choice(_NOUN_SENTENCES).format(noun=noun))
    if pattern_word:
        sentences.append(f"Features an all-over {pattern_word.lower()} design.")
    if sleeve_word:
        sentences.append(f"{sleeve_word.replace('-', ' ').capitalize()} cut for easy layering.")
    if 0.25 <= style_mode < 0.55:
        sentences.append(rng.choice(_STYLE_SENTENCES[p.style]))
    while len(sentences) < 3 and rng.random() < 0.5 or not sentences:
        sentences.append(rng.choice(_FILLER))
    if habit == "mojibake":
        sentences.append(rng.choice(_FRENCH_FLAIR))
    description = " ".join(sentences)

    brand = rng.choice(vendor.brands)
    if habit == "caps":
        title, description, brand = title.upper(), description.upper(), brand.upper()
    elif habit == "html":
        description = _htmlify(rng, description)
        if rng.random() < 0.3:
            title = title.replace(" ", "&nbsp;", 1)
        brand = brand.replace("&", "&amp;")
    elif habit == "mojibake":
        if rng.random() < 0.8:
            title, description, brand = _mojibake(title), _mojibake(description), _mojibake(brand)
    elif habit == "copypasta":
        roll = rng.random()
        if roll < 0.5:
            description = f"{description} {description}"  # the paragraph pasted twice
        elif roll < 0.8:
            description = f"{description} {sentences[0]}"
        boiler = rng.choice(_BOILERPLATE)
        description += f" {boiler}" * rng.randint(1, 2)
    elif habit == "typos":
        title, description = _typos(rng, title, 0.15), _typos(rng, description, 0.15)
    elif habit == "terse" and rng.random() < 0.65:
        description = ""
        mentions = in_title

    p.vendor, p.brand, p.title, p.description = vendor.name, brand, title, description
    p.mentions = tuple(a for a in ATTRIBUTES if a in mentions)



def _label_cell(rng: random.Random, label: str, synonyms: dict[str, list[str]]) -> str:
    """Mostly the canonical label; sometimes a vendor synonym or odd casing; rarely empty."""
    roll = rng.random()
    if roll < 0.03:
        return ""
    if roll < 0.08 and synonyms.get(label):
        word = rng.choice(synonyms[label])
        return rng.choice((word.title(), word.upper(), word))
    if roll < 0.13:
        spaced = label.replace("_", " ")
        return rng.choice(
            (
                spaced.upper(),
                spaced.title().replace(" ", "-"),
                f" {spaced.capitalize()} ",
                label.upper(),
                label.replace("_", "").upper(),
            )
        )
    return label
