"""Writes the sample datasets bundled in `relik_jax/resources/sample/` (our own sentences).

Small template-built documents about European cities, countries, people and companies, with
gold mentions (Wikipedia titles), entity types and relations, in ReLiK's EL and RE jsonl formats.
They exist so that `python -m relik_jax.train` runs and visibly learns on a fresh machine; they are
not a benchmark. Deterministic: `python tools/make_sample_data.py` rewrites the same files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "relik_jax" / "resources" / "sample"

CAPITALS = {
    "Rome": "Italy", "Paris": "France", "Berlin": "Germany", "Madrid": "Spain", "Lisbon": "Portugal",
    "Vienna": "Austria", "Athens": "Greece", "Warsaw": "Poland", "Dublin": "Republic of Ireland",
    "Oslo": "Norway", "Stockholm": "Sweden", "Helsinki": "Finland", "Copenhagen": "Denmark",
    "Prague": "Czech Republic", "Budapest": "Hungary", "Brussels": "Belgium", "Amsterdam": "Netherlands",
}  # fmt: skip
COUNTRY_NAMES = {"Republic of Ireland": "Ireland"}  # surface form when it differs from the title
CITIES = {  # city -> country (not capitals)
    "Ulm": "Germany", "Bonn": "Germany", "Munich": "Germany", "Wolfsburg": "Germany", "Salzburg": "Austria",
    "Pisa": "Italy", "Florence": "Italy", "Turin": "Italy", "Maranello": "Italy", "Málaga": "Spain",
    "Besançon": "France", "Odense": "Denmark", "Billund": "Denmark", "Espoo": "Finland", "Porto": "Portugal",
    "Gdańsk": "Poland", "Eindhoven": "Netherlands", "Gothenburg": "Sweden", "Bergen": "Norway",
}  # fmt: skip
PEOPLE = {  # person -> (birthplace, country of citizenship)
    "Albert Einstein": ("Ulm", "Germany"), "Ludwig van Beethoven": ("Bonn", "Germany"),
    "Wolfgang Amadeus Mozart": ("Salzburg", "Austria"), "Galileo Galilei": ("Pisa", "Italy"),
    "Dante Alighieri": ("Florence", "Italy"), "Pablo Picasso": ("Málaga", "Spain"),
    "Victor Hugo": ("Besançon", "France"), "Hans Christian Andersen": ("Odense", "Denmark"),
    "Marie Curie": ("Warsaw", "Poland"), "Franz Kafka": ("Prague", "Czech Republic"),
    "James Joyce": ("Dublin", "Republic of Ireland"), "Fernando Pessoa": ("Lisbon", "Portugal"),
    "Greta Garbo": ("Stockholm", "Sweden"), "Edvard Grieg": ("Bergen", "Norway"),
    "Sigmund Freud": ("Vienna", "Austria"), "Lech Wałęsa": ("Gdańsk", "Poland"),
}  # fmt: skip
COMPANIES = {  # company -> headquarters city
    "Volkswagen": "Wolfsburg", "Siemens": "Munich", "Fiat": "Turin", "Ferrari": "Maranello",
    "Nokia": "Espoo", "The Lego Group": "Billund", "Philips": "Amsterdam", "Spotify": "Stockholm",
    "Volvo Cars": "Gothenburg", "Heineken N.V.": "Amsterdam", "Renault": "Paris",
}  # fmt: skip
COMPANY_NAMES = {"The Lego Group": "Lego", "Heineken N.V.": "Heineken", "Volvo Cars": "Volvo"}
SURNAMES = {p: p.split()[-1] for p in PEOPLE}
RELATIONS = {
    "capital of": "the country whose capital the subject is",
    "located in": "the country in which the subject place lies",
    "place of birth": "the place where the subject person was born",
    "country of citizenship": "the country of which the subject person is a citizen",
    "headquarters location": "the city where the subject organisation has its headquarters",
}
TYPES = {**{c: "LOC" for c in [*CAPITALS, *CITIES, *CAPITALS.values()]}, **{p: "PER" for p in PEOPLE}}
TYPES.update({c: "ORG" for c in COMPANIES})


def country_of(city: str) -> str:
    return CAPITALS.get(city) or CITIES[city]


def name(title: str, short: bool = False) -> str:
    if short and title in SURNAMES:
        return SURNAMES[title]
    return COUNTRY_NAMES.get(title) or COMPANY_NAMES.get(title) or title


def templates(rng: random.Random):
    """Yields (pieces, triplets): pieces are strings or (title, surface) mentions."""
    city, country = rng.choice(list(CAPITALS.items()))
    person, (birth, citizen) = rng.choice(list(PEOPLE.items()))
    company, hq = rng.choice(list(COMPANIES.items()))
    other = rng.choice([*CITIES, *CAPITALS])
    short = rng.random() < 0.3
    p = (person, name(person, short))
    choice = rng.randrange(9)
    if choice == 0:
        return [(city, city), " is the capital of ", (country, name(country)), "."], [(city, "capital of", country)]
    if choice == 1:
        return [p, " was born in ", (birth, birth), "."], [(person, "place of birth", birth)]
    if choice == 2:
        c = country_of(hq)
        return (
            [(company, name(company)), " is headquartered in ", (hq, hq), ", ", (c, name(c)), "."],
            [(company, "headquarters location", hq), (hq, "located in", c)],
        )
    if choice == 3:
        c = country_of(birth)
        return (
            [(birth, birth), ", a city in ", (c, name(c)), ", is where ", p, " was born."],
            [(birth, "located in", c), (person, "place of birth", birth)],
        )
    if choice == 4:
        return [p, " visited ", (other, other), " in ", str(rng.randrange(1850, 2020)), "."], []
    if choice == 5:
        return (
            [p, " was a citizen of ", (citizen, name(citizen)), " and was born in ", (birth, birth), "."],
            [(person, "country of citizenship", citizen), (person, "place of birth", birth)],
        )
    if choice == 6:
        return (
            ["The offices of ", (company, name(company)), " are in ", (hq, hq), ", not in ", (city, city), "."],
            [(company, "headquarters location", hq)],
        )
    if choice == 7:
        return ["In ", (city, city), ", the capital of ", (country, name(country)), ", ", p, " gave a talk."], [
            (city, "capital of", country)
        ]
    c = country_of(other)
    return [(other, other), " lies in ", (c, name(c)), "."], [(other, "located in", c)]


def render(pieces, triplets, doc_id: int) -> tuple[dict, dict]:
    """The EL record (characters) and the RE record (words, titles as span labels) of a sentence."""
    text, char_spans, words, word_spans = "", [], [], {}
    for piece in pieces:
        if isinstance(piece, tuple):
            title, surface = piece
            char_spans.append([len(text), len(text) + len(surface), title])
            toks = surface.replace(",", " ,").split()
            word_spans.setdefault(title, [len(words), len(words) + len(toks), title])
            words += toks
            text += surface
        else:
            text += piece
            words += piece.replace(",", " ,").replace(".", " .").split()
    el = {"doc_id": doc_id, "doc_text": text, "doc_span_annotations": char_spans}
    re_ = {
        "doc_id": doc_id,
        "doc_words": words,
        "doc_span_annotations": [list(v) for v in word_spans.values()],
        "doc_triplet_annotations": [
            {"subject": word_spans[s], "relation": r, "object": word_spans[o]} for s, r, o in triplets
        ],
    }
    return el, re_


def main() -> None:
    rng = random.Random(2026)
    seen = set()
    splits = {"train": 400, "dev": 60}
    for split, n in splits.items():
        el_out, re_out = [], []
        while len(el_out) < n:
            el, re_ = render(*templates(rng), len(el_out))
            if el["doc_text"] in seen:
                continue
            seen.add(el["doc_text"])
            el_out.append(el)
            re_out.append(re_)
        for kind, rows in (("el", el_out), ("re", re_out)):
            path = OUT / kind / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    titles = sorted({*CAPITALS, *CAPITALS.values(), *CITIES, *PEOPLE, *COMPANIES})
    (OUT / "kb.tsv").write_text("".join(f"{t}\n" for t in titles), encoding="utf-8")
    (OUT / "relations.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in RELATIONS.items()), encoding="utf-8")
    (OUT / "types.tsv").write_text("".join(f"{t}\t{TYPES[t]}\n" for t in titles), encoding="utf-8")


if __name__ == "__main__":
    main()
