"""app.links: the page state in its URL, parsed and written back."""
from hypothesis import given
from hypothesis import strategies as st

from app.links import TABS, PageLink, link_query, parse_link


def test_the_issue_example_parses():
    link, notices = parse_link({"example": "1", "xi": "0.95", "tab": "confidence", "token": "12,20"}, 5)
    assert link == PageLink(example=1, xi=0.95, tab="confidence", token=(12, 20)) and notices == []


def test_bad_values_are_ignored_with_a_notice_each():
    link, notices = parse_link({"example": "9", "xi": "2", "size": "big", "tab": "nope", "token": "1",
                                "foo": "1"}, 3)
    assert link == PageLink()
    assert len(notices) == 6
    assert "examples 0 to 2" in notices[0] and "[0, 1]" in notices[1] and "tabs are token-pass" in notices[3]
    assert "unknown parameter(s) foo" in notices[5]
    assert parse_link({"xi": "nan"}, 0)[0].xi is None and parse_link({"example": "0"}, 0)[1]


def test_an_empty_link_is_an_empty_query():
    assert link_query(PageLink()) == "" and parse_link({}, 3) == (PageLink(), [])


@given(example=st.none() | st.integers(0, 9), xi=st.none() | st.floats(0, 1),
       size=st.none() | st.tuples(st.integers(1, 4000), st.integers(1, 4000)),
       tab=st.none() | st.sampled_from(list(TABS)), token=st.none() | st.tuples(st.integers(0, 99),
                                                                                st.integers(0, 99)))
def test_a_written_link_parses_back_to_itself(example, xi, size, tab, token):
    link = PageLink(example, xi, size, tab, token)
    query = dict(part.split("=") for part in link_query(link).lstrip("?").split("&") if part)
    parsed, notices = parse_link(query, 10)
    assert notices == []
    assert parsed.example == example and parsed.size == size and parsed.tab == tab and parsed.token == token
    assert (parsed.xi is None) == (xi is None) and (xi is None or abs(parsed.xi - xi) <= 1e-6)
