"""Countries as the CLI shows them: ISO code, English and Spanish names, calling code.

The set of regions comes from phonenumbers (every region a phone number can belong to), the names
from babel's CLDR data. babel costs ~0.15 s to import and load, so it is imported on first use;
the table is built once per process.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import phonenumbers

__all__ = [
    "Country",
    "calling_code_place",
    "country_for_calling_code",
    "country_for_region",
    "find_countries",
]

NON_GEOGRAPHIC = "001"

# ITU names for the non-geographic calling codes phonenumbers knows (region "001").
_NON_GEOGRAPHIC_NAMES: dict[int, tuple[str, str]] = {
    800: ("International Freephone", "Número gratuito internacional"),
    808: ("International Shared Cost Service", "Servicio internacional de costo compartido"),
    870: ("Inmarsat", "Inmarsat"),
    878: ("Universal Personal Telecommunications", "Telecomunicaciones personales universales"),
    881: ("Global Mobile Satellite System", "Sistema mundial de satélites móviles"),
    882: ("International Networks", "Redes internacionales"),
    883: ("International Networks", "Redes internacionales"),
    888: ("OCHA disaster relief", "Socorro en casos de desastre (OCAH)"),
    979: ("International Premium Rate Service", "Servicio internacional de tarifa especial"),
}
_NON_GEOGRAPHIC_GENERIC = ("International networks", "Redes internacionales")

# Names people type that CLDR does not use (folded form -> ISO code).
_ALIASES = {
    "usa": "US",
    "eeuu": "US",
    "ee uu": "US",
    "uk": "GB",
    "england": "GB",
    "great britain": "GB",
    "britain": "GB",
    "gran bretana": "GB",
    "inglaterra": "GB",
    "holland": "NL",
    "holanda": "NL",
    "turkey": "TR",
    "czech republic": "CZ",
    "republica checa": "CZ",
    "ivory coast": "CI",
    "costa de marfil": "CI",
}

_CALLING_CODE = re.compile(r"\+?\s*([1-9][0-9]{0,2})")


@dataclass(frozen=True)
class Country:
    iso: str  # "MX"; "001" for non-geographic calling codes
    name_en: str  # "Mexico"
    name_es: str  # "México"
    calling_code: int  # 52; 0 when unknown


def country_for_region(iso: str) -> Country:
    """The country for an ISO 3166 alpha-2 code; an unknown code gives its own code as names."""
    code = iso.strip().upper()
    table = _table()
    if code in table.by_iso:
        return table.by_iso[code]
    if code == NON_GEOGRAPHIC:
        return Country(NON_GEOGRAPHIC, *_NON_GEOGRAPHIC_GENERIC, 0)
    return Country(iso, iso, iso, phonenumbers.country_code_for_region(code))


def country_for_calling_code(calling_code: int) -> Country:
    """The main country of a calling code (US for +1, GB for +44), or the non-geographic
    service; an unknown code gives a Country named after it."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(calling_code)
    if not regions:
        return Country("", f"+{calling_code}", f"+{calling_code}", calling_code)
    if regions[0] == NON_GEOGRAPHIC:
        return _non_geographic(calling_code)
    return country_for_region(regions[0])


def calling_code_place(calling_code: int, region: str | None = None) -> str:
    """How messages name where a number belongs: "Mexico (+52)".

    For a code shared by several regions (+1, +44...) and no known region, the shared code is
    named instead of guessing one country.
    """
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(calling_code, ())
    if region and region != NON_GEOGRAPHIC:
        return f"{country_for_region(region).name_en} (+{calling_code})"
    if len(regions) <= 1:
        return f"{country_for_calling_code(calling_code).name_en} (+{calling_code})"
    names = [country_for_region(r).name_en for r in regions]
    if len(names) <= 3:
        return f"{', '.join(names[:-1])} or {names[-1]} (+{calling_code})"
    return f"{names[0]} or another country sharing +{calling_code}"


def find_countries(query: str) -> list[Country]:
    """Countries matching a name (English or Spanish, any case or accents, whole or partial), an
    ISO code ("MX") or a calling code ("+52", "52"). Empty list when nothing matches."""
    text = query.strip()
    if not text:
        return []
    code = _CALLING_CODE.fullmatch(text)
    if code:
        return _by_calling_code(int(code.group(1)))
    table = _table()
    if len(text) == 2 and text.upper() in table.by_iso:
        return [table.by_iso[text.upper()]]
    folded = _fold(text)
    if folded in _ALIASES:  # "UK" means Britain, not also Ukraine
        return [table.by_iso[_ALIASES[folded]]]
    return _by_name(folded)


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    countries: tuple[Country, ...]  # sorted by English name
    by_iso: dict[str, Country]
    folded: tuple[tuple[str, ...], ...]  # per country: folded names to match queries against


@functools.cache
def _table() -> _Table:
    from babel import Locale  # slow import: only commands that name countries pay for it

    english = Locale("en").territories
    spanish = Locale("es").territories
    # Inverting the code → regions map is free; country_code_for_region would load every
    # region's numbering metadata (~0.1 s) just to read one number from each.
    calling_codes = {
        region: code
        for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
        for region in regions
    }
    countries = [
        Country(
            iso,
            english.get(iso, iso),
            spanish.get(iso, english.get(iso, iso)),
            calling_codes[iso],
        )
        for iso in phonenumbers.SUPPORTED_REGIONS
    ]
    countries += [_non_geographic(code) for code in _non_geographic_codes()]
    countries.sort(key=lambda c: (_fold(c.name_en), c.calling_code))
    return _Table(
        countries=tuple(countries),
        by_iso={c.iso: c for c in countries if c.iso != NON_GEOGRAPHIC},
        folded=tuple(_searchable_names(c) for c in countries),
    )


def _searchable_names(country: Country) -> tuple[str, ...]:
    names: tuple[str, ...] = (_fold(country.name_en), _fold(country.name_es))
    if country.iso == NON_GEOGRAPHIC:
        names += ("international", "internacional", "non geographic")
    return names


def _non_geographic_codes() -> list[int]:
    return sorted(
        code
        for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
        if regions == (NON_GEOGRAPHIC,)
    )


def _non_geographic(calling_code: int) -> Country:
    name_en, name_es = _NON_GEOGRAPHIC_NAMES.get(calling_code, _NON_GEOGRAPHIC_GENERIC)
    return Country(NON_GEOGRAPHIC, name_en, name_es, calling_code)


def _by_calling_code(calling_code: int) -> list[Country]:
    """The code's main region first (US for +1), then the others by English name."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(calling_code, ())
    if regions == (NON_GEOGRAPHIC,):
        return [_non_geographic(calling_code)]
    main = [country_for_region(regions[0])] if regions else []
    others = [c for c in _table().countries if c.iso in regions[1:]]
    return main + others


def _by_name(folded_query: str) -> list[Country]:
    """Exact names first, then names starting with the query, then names containing it."""
    table = _table()
    ranked: list[tuple[int, int, Country]] = []
    for position, (country, names) in enumerate(zip(table.countries, table.folded, strict=True)):
        rank = _match_rank(folded_query, names)
        if rank is not None:
            ranked.append((rank, position, country))
    return [country for _, _, country in sorted(ranked, key=lambda r: (r[0], r[1]))]


def _match_rank(query: str, names: tuple[str, ...]) -> int | None:
    if any(name == query for name in names):
        return 0
    if any(name.startswith(query) for name in names):
        return 1
    # a word starting with the query ("kingdom") before any other substring ("ngdom")
    if any(re.search(rf"\b{re.escape(query)}", name) for name in names):
        return 2
    if any(query in name for name in names):
        return 3
    return None


def _fold(text: str) -> str:
    """Lower case, no accents, "&" as "and", "Saint" as "St", punctuation as spaces."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    plain = plain.replace("&", " and ").replace("’", "").replace("'", "")
    plain = re.sub(r"[^\w]+", " ", plain).strip()
    return re.sub(r"\bsaint\b", "st", plain)
