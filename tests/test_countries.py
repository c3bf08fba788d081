"""Country lookup: names in English and Spanish, ISO codes, calling codes."""

from __future__ import annotations

import phonenumbers
import pytest

from tasks.countries import (
    Country,
    calling_code_place,
    country_for_calling_code,
    country_for_region,
    find_countries,
)

MEXICO = Country("MX", "Mexico", "México", 52)


@pytest.mark.parametrize(
    "query", ["Mexico", "méxico", "MEXICO", "mexico ", "MX", "mx", "+52", "52"]
)
def test_every_way_of_naming_mexico(query: str) -> None:
    assert find_countries(query) == [MEXICO]


def test_plus_one_lists_every_region_sharing_it() -> None:
    found = find_countries("+1")
    assert [c.iso for c in found[:1]] == ["US"]  # the code's main region first
    assert {c.iso for c in found} == set(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1])
    assert all(c.calling_code == 1 for c in found)
    rest = [c.name_en for c in found[1:]]
    assert rest == sorted(rest, key=str.casefold)
    assert "CA" in {c.iso for c in found} and "JM" in {c.iso for c in found}


def test_partial_names_match_in_both_languages() -> None:
    united = {c.iso for c in find_countries("united")}
    assert {"US", "GB", "AE"} <= united
    assert "GB" in {c.iso for c in find_countries("reino")}  # Reino Unido
    assert "DE" in {c.iso for c in find_countries("alemania")}
    assert "ES" in {c.iso for c in find_countries("espana")}  # accent-insensitive
    assert "PE" in {c.iso for c in find_countries("PERÚ")}


def test_exact_names_come_before_partial_ones() -> None:
    found = [c.iso for c in find_countries("guinea")]
    assert found[0] == "GN"
    assert {"GQ", "GW", "PG"} <= set(found)


def test_nothing_matches() -> None:
    assert find_countries("") == []
    assert find_countries("   ") == []
    assert find_countries("atlantis") == []
    assert find_countries("+999") == []


def test_common_aliases() -> None:
    assert [c.iso for c in find_countries("USA")] == ["US"]
    assert [c.iso for c in find_countries("UK")] == ["GB"]
    assert [c.iso for c in find_countries("EEUU")] == ["US"]


def test_non_geographic_codes() -> None:
    (freephone,) = find_countries("+800")
    assert freephone.iso == "001" and freephone.calling_code == 800
    assert country_for_calling_code(882).iso == "001"


def test_country_for_region() -> None:
    assert country_for_region("MX") == MEXICO
    assert country_for_region("mx") == MEXICO
    assert country_for_region("ES").name_es == "España"
    unknown = country_for_region("QQ")
    assert (unknown.iso, unknown.name_en, unknown.name_es) == ("QQ", "QQ", "QQ")


def test_every_phone_region_has_names_and_its_calling_code() -> None:
    for region in phonenumbers.SUPPORTED_REGIONS:
        country = country_for_region(region)
        assert country.name_en and country.name_es
        assert country.name_en != region, region  # babel names every phonenumbers region
        assert country.calling_code == phonenumbers.country_code_for_region(region)


def test_calling_code_place() -> None:
    assert calling_code_place(52) == "Mexico (+52)"
    assert calling_code_place(1, "CA") == "Canada (+1)"
    assert "+1" in calling_code_place(1) and "United States" in calling_code_place(1)
    assert calling_code_place(7) == "Russia or Kazakhstan (+7)"


def test_non_geographic_services_are_searchable_by_name() -> None:
    assert [c.calling_code for c in find_countries("freephone")] == [800]
    assert {c.calling_code for c in find_countries("inmarsat")} == {870}
    assert 882 in {c.calling_code for c in find_countries("international")}
