"""Cost before launch (issue 11): the price table a user replaces, and vectorised estimates."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from smartchat.errors import ContactFileError, SmartChatError
from tasks.phones import check_phones
from tasks.pricing import OPENING_NOTE, estimate, launch_estimate, load_prices

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "sms-prices.tsv"
HEADER = "country\tprice_per_segment\tcurrency\n"


def price_file(tmp_path: Path, body: str, *, header: str = HEADER, name: str = "p.tsv") -> Path:
    path = tmp_path / name
    path.write_text(header + body, encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(SmartChatError) as caught:
        load_prices(path)
    assert not isinstance(caught.value, ContactFileError)
    return str(caught.value)


# --- the shipped table ---------------------------------------------------------------------------


def test_the_shipped_table_is_marked_as_sample_and_loads():
    first = SHIPPED.read_text(encoding="utf-8").splitlines()[0]
    assert first == ("# SAMPLE PRICES, not real tariffs: replace with your aggregator's price list")
    table = load_prices(SHIPPED)
    assert table.currency == "USD"
    assert table.default is not None
    # every country of the bundled sample campaign has a price of its own
    phones = pl.read_csv(ROOT / "data" / "sample-campaign.tsv", separator="\t", infer_schema=False)
    countries = set(check_phones(phones["CONTACT"])["region"].to_list())
    assert countries <= set(table.prices)


def test_the_sample_campaign_costs_its_opening_messages():
    phones = pl.read_csv(ROOT / "data" / "sample-campaign.tsv", separator="\t", infer_schema=False)
    contacts = pl.DataFrame({"phone": phones["CONTACT"]}).with_columns(
        check_phones(phones["CONTACT"])["region"].alias("country")
    )
    table = load_prices(SHIPPED)
    got = launch_estimate(contacts, pl.Series([2] * contacts.height), table)
    assert got.opening.messages == 1000 and got.opening.segments == 2000
    assert got.opening.unpriced == ()
    assert not any(got.opening.by_country["default_price"])
    expected = sum(
        count * 2 * table.prices[country]
        for country, count in contacts["country"].value_counts().iter_rows()
    )
    assert got.opening.cost == pytest.approx(expected)
    assert got.upper_bound is None and got.note == OPENING_NOTE


# --- reading a table -------------------------------------------------------------------------


def test_comments_blank_lines_bom_crlf_and_case_are_accepted(tmp_path):
    path = tmp_path / "prices.tsv"
    text = (
        "# SAMPLE\r\n\r\n  # indented comment\r\n"
        "Country\tPrice_per_segment\tCurrency\r\n"
        "mx\t0.042\tmxn\r\n# a comment between rows\r\n*\t.5\tMXN\r\n\r\n"
    )
    path.write_bytes("\ufeff".encode() + text.encode())
    table = load_prices(path)
    assert table.prices == {"MX": 0.042}
    assert table.default == 0.5
    assert table.currency == "MXN"
    assert table.source == path


def test_without_a_default_row_an_unlisted_country_is_unpriced(tmp_path):
    table = load_prices(price_file(tmp_path, "MX\t0.04\tUSD\n"))
    assert table.default is None
    got = estimate(pl.DataFrame({"country": ["MX", "DE", "DE"], "segments": [1, 2, 1]}), table)
    assert got.unpriced == ("DE",)
    assert got.cost is None
    de = got.by_country.filter(pl.col("country") == "DE").row(0, named=True)
    assert de["price_per_segment"] is None and de["cost"] is None and de["segments"] == 3


@pytest.mark.parametrize(
    ("body", "line", "field", "words"),
    [
        ("MX\t0,042\tUSD\n", 2, "price_per_segment", "'0,042' is not a price"),
        ("MX\t$0.042\tUSD\n", 2, "price_per_segment", "not a price"),
        ("MX\t-0.04\tUSD\n", 2, "price_per_segment", "not a price"),
        ("MX\tabc\tUSD\n", 2, "price_per_segment", "not a price"),
        ("MX\tnan\tUSD\n", 2, "price_per_segment", "not a price"),
        ("MX\tinf\tUSD\n", 2, "price_per_segment", "not a price"),
        ("MX\t1e-3\tUSD\n", 2, "price_per_segment", "not a price"),
        ("MX\t\tUSD\n", 2, "price_per_segment", "not a price"),
        ("XX\t0.04\tUSD\n", 2, "country", "'XX' is not an ISO 3166 alpha-2"),
        ("MX\t0.04\tUSD\nMEX\t0.04\tUSD\n", 3, "country", "'MEX' is not"),
        ("MX\t0.04\tUSD\nmx\t0.05\tUSD\n", 3, "country", "MX is already priced on line 2"),
        ("*\t0.04\tUSD\n# x\n*\t0.05\tUSD\n", 4, "country", "* is already priced on line 2"),
        ("MX\t0.04\tUSD\nUS\t0.01\tEUR\n", 3, "currency", "EUR differs from USD on line 2"),
        ("MX\t0.04\tdollars\n", 2, "currency", "three-letter currency code"),
        ("MX\t0.04\n", 2, None, "expected 3 tab-separated fields"),
        ("MX\t0.04\tUSD\textra\n", 2, None, "found 4"),
        ("MX 0.04 USD\n", 2, None, "found 1"),
    ],
)
def test_a_malformed_table_is_refused_naming_file_line_and_field(
    tmp_path, body, line, field, words
):
    path = price_file(tmp_path, body)
    message = refusal(path)
    assert str(path) in message
    assert f"line {line}" in message
    if field:
        assert f"line {line}, {field}:" in message
    assert words in message


def test_a_table_without_the_header_is_refused(tmp_path):
    message = refusal(price_file(tmp_path, "MX\t0.04\tUSD\n", header="# prices\n"))
    assert "line 2" in message and "header" in message and "country price_per_segment" in message
    assert "no header" in refusal(price_file(tmp_path, "", header="# only comments\n\n"))


def test_a_table_without_prices_is_refused(tmp_path):
    message = refusal(price_file(tmp_path, "# nothing yet\n"))
    assert "no prices after the header on line 1" in message


@pytest.mark.parametrize("kind", ["missing", "folder", "binary"])
def test_an_unreadable_table_is_a_file_error(tmp_path, kind):
    path = tmp_path / "prices.tsv"
    if kind == "folder":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"country\tprice_per_segment\tcurrency\n\xff\xfe\x00MX")
    with pytest.raises(ContactFileError) as caught:
        load_prices(path)
    assert str(path) in str(caught.value)


# --- estimates -------------------------------------------------------------------------------


@pytest.fixture
def table(tmp_path):
    return load_prices(
        price_file(tmp_path, "# sample\n*\t0.05\tUSD\nUS\t0.0079\tUSD\nMX\t0.042\tUSD\n")
    )


def test_estimate_per_country_with_the_default_row(table):
    messages = pl.DataFrame(
        {"country": ["MX", "MX", "DE", None, "US", "001"], "segments": [1, 2, 1, 1, 3, 2]}
    )
    got = estimate(messages, table)
    rows = {r["country"]: r for r in got.by_country.to_dicts()}
    assert rows["MX"] == {
        "country": "MX",
        "messages": 2,
        "segments": 3,
        "price_per_segment": 0.042,
        "default_price": False,
        "cost": 0.126,
    }
    assert rows["US"]["cost"] == 0.0237  # rounded: 3 * 0.0079 is 0.023700000000000002 in floats
    assert rows["DE"]["default_price"] and rows["DE"]["price_per_segment"] == 0.05
    assert rows[None]["default_price"] and rows["001"]["cost"] == 0.1
    assert (got.messages, got.segments, got.currency, got.unpriced) == (6, 10, "USD", ())
    assert got.cost == 0.3497
    assert got.by_country["cost"].to_list() == sorted(got.by_country["cost"], reverse=True)


def test_estimate_of_nothing(table):
    got = estimate(
        pl.DataFrame(
            {"country": [], "segments": []}, schema={"country": pl.Utf8, "segments": pl.Int64}
        ),
        table,
    )
    assert (got.messages, got.segments, got.cost) == (0, 0, 0.0)


def test_estimate_needs_country_and_segments(table):
    with pytest.raises(ValueError, match="segments"):
        estimate(pl.DataFrame({"country": ["MX"]}), table)


def test_launch_estimate_prices_the_opening_and_an_upper_bound(table):
    contacts = pl.DataFrame(
        {"phone": ["+525512345678", "+12125551234", "+34612345678"], "country": ["MX", "US", "ES"]}
    )
    opening = pl.Series([1, 2, 1])
    others = [("thanks", pl.Series([1, 1, 1])), ("callback", pl.Series([2, 2, 2]))]
    got = launch_estimate(contacts, opening, table, others)
    assert got.opening.messages == 3 and got.opening.segments == 4
    assert got.opening.cost == pytest.approx(0.042 + 2 * 0.0079 + 0.05)
    assert got.upper_bound is not None
    assert got.upper_bound.messages == 9 and got.upper_bound.segments == 13
    mx = got.upper_bound.by_country.filter(pl.col("country") == "MX").row(0, named=True)
    assert mx["messages"] == 3 and mx["segments"] == 4
    assert "opening message" in got.note and "replies" in got.note


def test_launch_estimate_refuses_counts_that_do_not_fit_the_contacts(table):
    contacts = pl.DataFrame({"country": ["MX", "US"]})
    with pytest.raises(ValueError, match="1 segment counts for the opening message, 2 contacts"):
        launch_estimate(contacts, pl.Series([1]), table)
    with pytest.raises(ValueError, match="step 'thanks'"):
        launch_estimate(contacts, pl.Series([1, 1]), table, [("thanks", pl.Series([1]))])
