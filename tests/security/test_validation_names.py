"""The name mask shows the configured part of a name and no more, however the name is
written (issue 11, finding 6: ``李 四`` and ``张　三`` written with a space, U+3000, NBSP, a
thin space or a tab went out whole on MQTT, in lists and on the command line, because each
"word" of one character was its own initial)."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.publish as publish
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge.privacy import NAME_MASKS, mask_name
from tests.helpers import Broker, Listener, Node, cli, http_call, node_for

PROPERTY = settings(
    max_examples=300,
    deadline=None,  # a loaded machine is not a bug
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# every character Python calls a space: what a name's words may be split by on a keyboard,
# a copy from a spreadsheet or an ID card reader's output
SPACES = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
# characters that show nothing: zero-width space, non-joiner, joiner, word joiner, BOM,
# direction marks and embeddings, soft hyphen, Mongolian vowel separator
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2069\u00ad\u180e"  # noqa: E501
COMBINING = st.characters(categories=["Mn", "Mc", "Me"])
SCRIPTS = {
    "latin": st.characters(categories=["Lu", "Ll"], max_codepoint=0x024F),
    "cjk": st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    "arabic": st.characters(min_codepoint=0x0620, max_codepoint=0x06FF),  # Uyghur's letters
    "tibetan": st.characters(min_codepoint=0x0F40, max_codepoint=0x0FBC),
    "hangul": st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),
    "emoji": st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),
    # anything at all but the mask's own star (a name of stars "contains" its mask)
    "any": st.characters(exclude_characters="*"),
}


@st.composite
def words(draw: st.DrawFn) -> str:
    """A word of one script, with combining marks and invisible characters here and there."""
    letter = SCRIPTS[draw(st.sampled_from(sorted(SCRIPTS)))]
    part = st.one_of(letter, letter.flatmap(lambda c: COMBINING.map(lambda m: c + m)),
                     st.sampled_from(INVISIBLE))  # fmt: skip
    return "".join(draw(st.lists(part, min_size=1, max_size=draw(st.sampled_from([2, 6, 300])))))


@st.composite
def names(draw: st.DrawFn) -> str:
    """Words joined by runs of any spaces and invisible characters, with leading and trailing
    ones; from one character to several thousand."""
    gap = st.text(st.sampled_from(SPACES + INVISIBLE), min_size=1, max_size=3)
    parts = draw(st.lists(words(), min_size=1, max_size=draw(st.sampled_from([1, 3, 12]))))
    edge = st.text(st.sampled_from(SPACES + INVISIBLE), max_size=2)
    return draw(edge) + "".join(p + draw(gap) for p in parts[:-1]) + parts[-1] + draw(edge)


# -- the test's own reading of a name: what a person sees, word by word ------------------------


def _seen(text: str) -> str:
    return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Cs"))


def _clusters(word: str) -> list[str]:
    out: list[str] = []
    for c in word:
        if out and unicodedata.category(c).startswith("M"):
            out[-1] += c
        else:
            out.append(c)
    return out


def _name_words(name: str) -> list[list[str]]:
    return [_clusters(w) for w in _seen(name).split()]


def assert_masked(name: str, masked: str) -> None:
    """The mask's promise, for the ``surname`` style."""
    assert isinstance(masked, str) and masked
    # nothing shown that is not the name's, a star or a plain space (no control character,
    # no invisible one a screen would hide a second name in)
    assert set(masked) <= set(_seen(name)) | {"*", " "}, (name, masked)
    words = _name_words(name)
    whole = "".join(c for w in words for c in w)
    if not whole:
        assert masked == "***"
        return
    shown = [_clusters(w.replace("*", "")) for w in masked.split(" ")]
    # at most one cluster of each word, and only the cluster the word starts with
    firsts = [w[0] for w in words]
    visible = [c for part in shown for c in part]
    assert len(visible) <= len(words), (name, masked)
    assert all(v in firsts for v in visible), (name, masked)
    assert visible == firsts[: len(visible)] or visible == firsts, (name, masked)
    # so never all of it: at least one cluster hidden, and the name nowhere in the mask
    assert len(visible) < len(whole), (name, masked)
    assert whole not in _seen(masked).replace(" ", "")
    assert len(masked) <= len(name) + 3  # a long name is never made longer by its mask


SPACED = ["李 四", "张\u3000三", "李\u00a0四", "张\u2009三", "李\t四", "王 小 明", "J S",
          "李\u200b四", "\u3000李\u3000", "李", "e\u0301", "A B Smith"]  # fmt: skip


@pytest.mark.parametrize("name", SPACED)
def test_a_name_written_with_a_space_is_masked(name: str) -> None:
    assert_masked(name, mask_name(name))


def test_the_masks_that_worked_still_read_the_same() -> None:
    assert mask_name("张三丰") == "张**"
    assert mask_name("John Smith") == "J*** S****"
    assert mask_name("李 四") == "李*"  # one word: the surname and a star, as 李四
    assert mask_name("张\u3000三丰") == "张**"


@PROPERTY
@given(names(), st.sampled_from(NAME_MASKS))
@example("李 四", "surname")
@example("\ud800李\udfff四", "surname")  # lone surrogates, as a bad decoder leaves them
@example("", "surname")
@example("\u200b\u3000\t", "surname")
def test_the_mask_never_shows_more_than_its_part_and_never_raises(name: str, style: str) -> None:
    masked = mask_name(name, style)
    if style == "none":
        assert masked == name
    elif style == "hidden":
        assert masked == "***"
    else:
        assert_masked(name, masked)


@PROPERTY
@given(st.text(max_size=50), st.sampled_from(NAME_MASKS))
def test_any_text_at_all_is_masked_without_raising(name: str, style: str) -> None:
    masked = mask_name(name, style)
    if style == "surname" and "*" not in name:
        assert_masked(name, masked)


# -- and where names leave the box: MQTT, the lists, the command line -----------------------


WRITTEN = {  # card: the name as a clerk typed it
    "01026F6C3A": "李 四",
    "0040856635": "张\u3000三",
    "0040856636": "王\u00a0五",
    "0040856637": "赵\u2009六",
    "0040856638": "孙\t七",
}


@pytest.fixture
def node(tmp_path: Path, broker: Broker) -> Iterator[Node]:
    readers = [{"id": "net-in", "gate": "main", "transport": "mqtt"}]
    n = node_for(tmp_path, readers, broker.port).start(wait_ready=True)
    yield n
    n.stop()


def test_a_spaced_name_leaves_the_box_masked_everywhere(
    node: Node, broker: Broker, listener: Listener
) -> None:
    for card, name in WRITTEN.items():
        out = cli(node.config, "pass", "add", "--kind", "resident", "--card", card, "--name", name)
        assert out.returncode == 0, out.stderr
    given_names = {name.split()[-1] for name in WRITTEN.values()}  # 四, 三, 五, 六, 七

    # MQTT: each decision's holder
    for card in WRITTEN:
        publish.single("gatehouse/gate-test/reader/net-in/swipe",
                       json.dumps({"card": card}), qos=1, port=broker.port)  # fmt: skip
        holder = listener.next("/decision")["holder"]
        assert holder == WRITTEN[card][0] + "*", holder

    # the command line's list, as text and as JSON
    listed = (
        cli(node.config, "pass", "list").stdout + cli(node.config, "--json", "pass", "list").stdout
    )
    # the local API's list, for a guard
    token = cli(node.config, "user", "add", "老张", "--role", "guard").stdout.strip()
    status, body = http_call(f"http://127.0.0.1:{node.api_port}", "GET", "/api/v1/passes", token)
    assert status == 200
    assert sorted(p["name"] for p in body["items"]) == sorted(n[0] + "*" for n in WRITTEN.values())
    for shown in (listed, json.dumps(body, ensure_ascii=False)):
        assert not any(g in shown for g in given_names), shown
