"""app.links: the page state in its URL, parsed and written back."""
from hypothesis import given
from hypothesis import strategies as st

from app.links import LESSON_STEPS, TABS, PageLink, link_query, parse_link


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


def test_a_lesson_link_opens_the_lesson_tab_at_its_step():
    link, notices = parse_link({"lesson": "3"}, 0)
    assert link == PageLink(tab="lesson", lesson=3) and notices == []
    assert link_query(link) == "?tab=lesson&lesson=3"
    assert parse_link({"tab": "lesson", "lesson": "3"}, 0)[0] == link
    for bad in ("0", "99", "two", "-1"):
        link, notices = parse_link({"lesson": bad}, 0)
        assert link.lesson is None and len(notices) == 1 and "steps 1 to" in notices[0]


def test_an_empty_link_is_an_empty_query():
    assert link_query(PageLink()) == "" and parse_link({}, 3) == (PageLink(), [])


@given(example=st.none() | st.integers(0, 9), xi=st.none() | st.floats(0, 1),
       size=st.none() | st.tuples(st.integers(1, 4000), st.integers(1, 4000)),
       tab=st.none() | st.sampled_from(list(TABS)), token=st.none() | st.tuples(st.integers(0, 99),
                                                                                st.integers(0, 99)),
       lesson=st.none() | st.integers(1, LESSON_STEPS))
def test_a_written_link_parses_back_to_itself(example, xi, size, tab, token, lesson):
    link = PageLink(example, xi, size, "lesson" if lesson else tab, token, lesson)
    query = dict(part.split("=") for part in link_query(link).lstrip("?").split("&") if part)
    parsed, notices = parse_link(query, 10)
    assert notices == []
    assert parsed == PageLink(parsed.example, parsed.xi, size, link.tab, token, lesson)
    assert parsed.example == example
    assert (parsed.xi is None) == (xi is None) and (xi is None or abs(parsed.xi - xi) <= 1e-6)
