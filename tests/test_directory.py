"""
Tests for :mod:`gatekeeper.directory`: parsing, validation errors that name
the line, ring plans, and reloading that never breaks what is in use.
"""

from __future__ import annotations

import os

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.directory import (
    Apartment,
    Directory,
    DirectoryError,
    DirectoryService,
    load_directory,
    parse_directory,
)

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(os.path.dirname(HERE), "etc", "residents.csv")

GOOD = """\
# a comment
apartment,name,extensions

101,Ana Souza,1011|1012
102,"Okafor, Chidi",1021 1022
concierge,Front desk,9000|1011
"""


def parse(text: str) -> Directory:
    return parse_directory(text, "residents.csv")


class ParseTests(SynchronousTestCase):
    """A valid file becomes the apartments and ring order it describes."""

    def test_lookup(self) -> None:
        """Each apartment reads back with its name and extensions in order."""
        directory = parse(GOOD)
        self.assertEqual(
            (directory.lookup("101"), directory.lookup("102")),
            (
                Apartment("101", "Ana Souza", ("1011", "1012")),
                Apartment("102", "Okafor, Chidi", ("1021", "1022")),
            ),
        )

    def test_lookup_unknown(self) -> None:
        """An apartment not listed (or the concierge row) is not found."""
        directory = parse(GOOD)
        self.assertEqual(
            [directory.lookup(a) for a in ("103", "0101", "concierge", "")],
            [None] * 4,
        )

    def test_ring_plan(self) -> None:
        """Residents ring first, then the concierge, each extension once."""
        directory = parse(GOOD)
        self.assertEqual(directory.ring_plan("101"), ("1011", "1012", "9000"))
        self.assertEqual(directory.ring_plan("102"), ("1021", "1022", "9000", "1011"))

    def test_ring_plan_held_apartment(self) -> None:
        """A visit's own Apartment plans the same ring order as its number."""
        directory = parse(GOOD)
        held = directory.lookup("102")
        assert held is not None
        self.assertEqual(directory.ring_plan(held), directory.ring_plan("102"))

    def test_ring_plan_unknown(self) -> None:
        """Planning for an unlisted apartment is a KeyError, not an empty plan."""
        self.assertRaises(KeyError, parse(GOOD).ring_plan, "999")

    def test_no_concierge(self) -> None:
        """Without a concierge row the plan is the residents' extensions."""
        directory = parse("apartment,name,extensions\n7,X,70\n")
        self.assertEqual(
            (directory.ring_plan("7"), directory.concierge), (("70",), None)
        )

    def test_read_only(self) -> None:
        """A loaded directory cannot be changed by a caller."""
        directory = parse(GOOD)
        with self.assertRaises(TypeError):
            directory.apartments["999"] = Apartment("999", "Z", ("1",))  # type: ignore[index]

    def test_sample_file(self) -> None:
        """The shipped etc/residents.csv loads, with its concierge."""
        directory = load_directory(SAMPLE)
        self.assertEqual(
            (sorted(directory.apartments), directory.ring_plan("1503")[-1:]),
            (["101", "102", "1503", "201"], ("9001",)),
        )

    def test_byte_order_mark(self) -> None:
        """A spreadsheet's UTF-8 byte-order mark does not spoil the header."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\xef\xbb\xbfapartment,name,extensions\n5,E,50\n")
        self.assertEqual(load_directory(path).ring_plan("5"), ("50",))


class ValidationTests(SynchronousTestCase):
    """Each kind of mistake is refused with the file and line it is on."""

    def assertRefused(self, text: str, line: int | None, words: str) -> None:
        with self.assertRaises(DirectoryError) as caught:
            parse(text)
        error = caught.exception
        self.assertEqual(error.line, line)
        where = "residents.csv" if line is None else f"residents.csv:{line}"
        self.assertTrue(str(error).startswith(where + ": "), str(error))
        self.assertIn(words, error.message)

    def test_header_missing(self) -> None:
        """A file starting with data rather than the header is refused."""
        self.assertRefused("# c\n101,A,1011\n", 2, "header")

    def test_no_header_at_all(self) -> None:
        """A file of only comments is refused, naming the file."""
        self.assertRefused("# nothing here\n", None, "no header")

    def test_no_apartments(self) -> None:
        """A header with no apartments (only a concierge) is refused."""
        self.assertRefused(
            "apartment,name,extensions\nconcierge,D,9\n", None, "no apartments"
        )

    def test_column_count(self) -> None:
        """A row with a missing column is refused on its line."""
        self.assertRefused(GOOD + "103,Lee\n", 7, "expected 3 columns")

    def test_apartment_not_digits(self) -> None:
        """An apartment a keypad cannot type is refused."""
        self.assertRefused(GOOD + "12B,Lee,1201\n", 7, "'12B' must be 1 to 10 digits")

    def test_duplicate_apartment(self) -> None:
        """The same apartment twice is refused, naming both lines."""
        self.assertRefused(
            GOOD + "101,Other,1013\n", 7, "listed twice (first on line 4)"
        )

    def test_second_concierge(self) -> None:
        """Two concierge rows are refused, naming the first."""
        self.assertRefused(GOOD + "concierge,Night,9100\n", 7, "first is on line 6")

    def test_empty_name(self) -> None:
        """A row without a name is refused."""
        self.assertRefused(GOOD + "103, ,1031\n", 7, "name is empty")

    def test_no_extensions(self) -> None:
        """A row with nothing to ring is refused."""
        self.assertRefused(GOOD + "103,Lee, | \n", 7, "no extensions")

    def test_extension_unsafe(self) -> None:
        """Dial-string syntax ('&', '/', '@') inside an extension is refused."""
        for bad in ("1031&1032", "SIP/1031", "1031@ctx", "${X}"):
            self.assertRefused(GOOD + f"103,Lee,{bad}\n", 7, "not dial-string safe")

    def test_extension_repeated(self) -> None:
        """An extension listed twice for one apartment is refused."""
        self.assertRefused(GOOD + "103,Lee,1031|1031\n", 7, "listed twice")

    def test_bad_csv_quoting(self) -> None:
        """An unclosed quote (a multi-line field) is refused on its line."""
        self.assertRefused(GOOD + '103,"Lee,1031\n', 7, "not valid CSV")

    def test_not_utf8(self) -> None:
        """A file in another encoding is refused, naming the first bad line."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"apartment,name,extensions\n101,Jos\xe9,1011\n")
        with self.assertRaises(DirectoryError) as caught:
            load_directory(path)
        self.assertEqual(
            (caught.exception.line, caught.exception.message), (2, "not UTF-8 text")
        )

    def test_unreadable(self) -> None:
        """A missing file is refused, naming it."""
        path = self.mktemp()
        with self.assertRaises(DirectoryError) as caught:
            load_directory(path)
        self.assertTrue(str(caught.exception).startswith(path + ": cannot be read"))


class DirectoryServiceTests(SynchronousTestCase):
    """Per-gate directories and reloading that keeps the old on error."""

    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def rewrite(self, path: str, text: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    def test_gate_selects_directory(self) -> None:
        """A known gate gets its own file; no gate or another gets the default."""
        default = self.write("apartment,name,extensions\n1,A,10\n")
        north = self.write("apartment,name,extensions\n1,N,11\n")
        service = DirectoryService(default, {"north": north})
        with capturedLogs() as events:
            plans = [
                service.for_gate(g).ring_plan("1") for g in ("north", None, "south")
            ]
        self.assertEqual(plans, [("11",), ("10",), ("10",)])
        self.assertEqual([e.get("gate") for e in events], ["south"])

    def test_bad_file_at_start(self) -> None:
        """A bad file refuses to build the service, so the server does not start."""
        default = self.write("apartment,name,extensions\n1,A,10\n")
        bad = self.write("apartment,name,extensions\nx,A,10\n")
        self.assertRaises(DirectoryError, DirectoryService, default, {"north": bad})

    def test_bad_gate_name(self) -> None:
        """A gate name with spaces or slashes is refused."""
        default = self.write("apartment,name,extensions\n1,A,10\n")
        self.assertRaises(DirectoryError, DirectoryService, default, {"a/b": default})

    def test_reload_swaps(self) -> None:
        """A valid edited file is in use after reload()."""
        path = self.write("apartment,name,extensions\n1,A,10\n")
        service = DirectoryService(path)
        self.rewrite(path, "apartment,name,extensions\n1,A,10|12\n2,B,20\n")
        with capturedLogs():
            errors = service.reload()
        self.assertEqual((errors, service.default.ring_plan("1")), ([], ("10", "12")))

    def test_reload_error_keeps_old(self) -> None:
        """A broken edit leaves the old directory in use and logs the line."""
        path = self.write("apartment,name,extensions\n1,A,10\n")
        service = DirectoryService(path)
        before = service.default
        self.rewrite(path, "apartment,name,extensions\n1,A,10\n1,B,20\n")
        with capturedLogs() as events:
            errors = service.reload()
        self.assertIs(service.default, before)
        self.assertEqual([e.line for e in errors], [3])
        self.assertEqual([e["error"] for e in events if "error" in e], [str(errors[0])])

    def test_live_visit_keeps_its_apartment(self) -> None:
        """What a visit already looked up is unchanged by a reload."""
        path = self.write("apartment,name,extensions\n1,A,10\n")
        service = DirectoryService(path)
        directory = service.for_gate(None)
        held = directory.lookup("1")
        self.rewrite(path, "apartment,name,extensions\n1,Z,99\n")
        with capturedLogs():
            service.reload()
        self.assertEqual(
            (held, directory.ring_plan("1"), service.default.ring_plan("1")),
            (Apartment("1", "A", ("10",)), ("10",), ("99",)),
        )
