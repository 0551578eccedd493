"""
Tests for :mod:`gatekeeper.session.uuids`: exactly what Asterisk's
``uuid_parse`` accepts goes in, exactly one form comes out.
"""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.session.uuids import InvalidCallUUID, canonical_uuid, is_canonical_uuid

SETTINGS = settings(
    deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
DASHES = (8, 13, 18, 23)
HEX = "0123456789abcdefABCDEF"


def mixed_case(text: str, flips: list[bool]) -> str:
    return "".join(
        c.upper() if flip else c for c, flip in zip(text, flips, strict=True)
    )


class CanonicalUUIDTests(SynchronousTestCase):
    @SETTINGS
    @given(st.uuids(), st.lists(st.booleans(), min_size=36, max_size=36))
    def test_every_uuid_accepted_lowercase(
        self, value: uuid.UUID, flips: list[bool]
    ) -> None:
        """Any UUID, of any version, in any mix of case, comes out lowercase."""
        text = str(value)
        for form in (text, text.upper(), mixed_case(text, flips)):
            self.assertEqual(canonical_uuid(form), text)
        self.assertTrue(is_canonical_uuid(text))

    @SETTINGS
    @given(st.uuids())
    def test_uppercase_is_not_canonical(self, value: uuid.UUID) -> None:
        """Only the lowercase form counts as canonical."""
        upper = str(value).upper()
        self.assertEqual(is_canonical_uuid(upper), upper == str(value))

    @SETTINGS
    @given(
        st.uuids(),
        st.integers(0, 35),
        st.characters(codec="utf-8").filter(lambda c: c not in HEX + "-"),
    )
    def test_foreign_character_refused(
        self, value: uuid.UUID, position: int, char: str
    ) -> None:
        """Replacing any character with one that is neither hex nor dash is refused."""
        text = str(value)
        mutated = text[:position] + char + text[position + 1 :]
        self.assertRaises(InvalidCallUUID, canonical_uuid, mutated)
        self.assertFalse(is_canonical_uuid(mutated))

    @SETTINGS
    @given(st.uuids(), st.integers(0, 35), st.sampled_from("0aF-"))
    def test_misplaced_dash_refused(
        self, value: uuid.UUID, position: int, char: str
    ) -> None:
        """A dash where hex belongs, or hex where a dash belongs, is refused."""
        text = str(value)
        if (text[position] == "-") == (char == "-"):
            return  # the same class of character: still a valid UUID
        mutated = text[:position] + char + text[position + 1 :]
        self.assertRaises(InvalidCallUUID, canonical_uuid, mutated)

    @SETTINGS
    @given(st.uuids(), st.integers(0, 36), st.sampled_from(["drop", "add"]))
    def test_wrong_length_refused(
        self, value: uuid.UUID, position: int, change: str
    ) -> None:
        """One character dropped from, or added to, a UUID is refused."""
        text = str(value)
        if change == "drop":
            mutated = text[: position - 1] + text[position:] if position else text[1:]
        else:
            mutated = text[:position] + "0" + text[position:]
        self.assertNotEqual(len(mutated), 36)
        self.assertRaises(InvalidCallUUID, canonical_uuid, mutated)

    @SETTINGS
    @given(st.uuids())
    def test_other_spellings_refused(self, value: uuid.UUID) -> None:
        """Braces, urn: prefixes, bare hex and padding are refused, as by Asterisk."""
        text = str(value)
        for form in (
            "{" + text + "}",
            "urn:uuid:" + text,
            value.hex,
            value.hex.upper(),
            " " + text,
            text + "\n",
            text.replace("-", "_"),
        ):
            self.assertRaises(InvalidCallUUID, canonical_uuid, form)
            self.assertFalse(is_canonical_uuid(form))

    def test_not_text_refused(self) -> None:
        """Bytes, UUID objects and None are not call UUIDs."""
        value = uuid.UUID(int=1)
        for thing in (None, value, str(value).encode(), value.bytes, 1):
            self.assertRaises(InvalidCallUUID, canonical_uuid, thing)  # type: ignore[arg-type]
            self.assertFalse(is_canonical_uuid(thing))

    def test_error_says_what_is_wanted(self) -> None:
        """The error names the text and the expected shape."""
        error = self.assertRaises(InvalidCallUUID, canonical_uuid, "12345")
        self.assertIn("'12345'", str(error))
        self.assertIn("36 characters", str(error))
        self.assertIsInstance(error, ValueError)

    def test_dash_positions(self) -> None:
        """The dashes of str(uuid.UUID) are where Asterisk wants them."""
        text = str(uuid.UUID(int=0))
        self.assertEqual([i for i, c in enumerate(text) if c == "-"], list(DASHES))
