"""
Who lives where: apartments to the extensions that ring for them.

A building's directory is a small CSV file (``etc/residents.csv``), edited by
hand, so it is checked strictly when loaded and every mistake is reported with
the file and line it is on.  The file format is documented in the sample's
header comment; in short::

    apartment,name,extensions
    101,Ana Souza,1011|1012
    concierge,Front desk,9000

Apartments are what a visitor types on the gate's keypad, so they are digits
only.  The ``concierge`` row (at most one) is rung after an apartment's own
extensions, for every apartment.

A loaded :class:`Directory` never changes: a visit keeps the directory (and
the :class:`Apartment`) it looked up for its whole life.  Reloading, on
SIGHUP, builds a new one and swaps it in only if the whole file is valid;
otherwise the old one stays and the error is logged.  A concierge company
serving several gates keeps one file per gate in
:class:`DirectoryService`, picked by the gate name the dialplan announces.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from types import MappingProxyType

from attrs import field, frozen
from twisted.application.service import Service
from twisted.logger import Logger

__all__ = [
    "CONCIERGE",
    "Apartment",
    "Directory",
    "DirectoryError",
    "DirectoryService",
    "load_directory",
    "parse_directory",
]

#: The apartment column value of the row that holds the concierge.
CONCIERGE = "concierge"
HEADER = ("apartment", "name", "extensions")

_APARTMENT = re.compile(r"[0-9]{1,10}")
# What may stand in a dial string such as PJSIP/{extension} or
# Local/{extension}@context/n: no '/', '@', '&', ',', '|', spaces or
# variables; '+' only in front (E.164), '*' and '#' as dialled keys.
_EXTENSION = re.compile(r"\+?[A-Za-z0-9][A-Za-z0-9_.*#-]{0,39}")
_GATE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SEPARATOR = re.compile(r"[|\s]+")
_MAX_NAME = 100


class DirectoryError(ValueError):
    """A directory file that cannot be used, and where the problem is."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.message = message


@frozen
class Apartment:
    """One apartment: who lives there and which extensions ring, in order."""

    number: str
    name: str
    extensions: tuple[str, ...]


def _read_only(apartments: Mapping[str, Apartment]) -> Mapping[str, Apartment]:
    return MappingProxyType(dict(apartments))


@frozen(eq=False)
class Directory:
    """One building's apartments, immutable once loaded."""

    source: str
    apartments: Mapping[str, Apartment] = field(converter=_read_only)
    concierge: Apartment | None = None

    def lookup(self, apartment: str) -> Apartment | None:
        """The apartment a visitor typed, or None if there is no such one."""
        return self.apartments.get(apartment)

    def ring_plan(self, apartment: str | Apartment) -> tuple[str, ...]:
        """
        Extensions to ring in order: the apartment's, then the concierge's.

        Takes the :class:`Apartment` a visit already holds, so a reload in
        between cannot change whom it rings; an extension listed twice is
        rung once.  An unknown apartment number raises :class:`KeyError`.
        """
        if isinstance(apartment, str):
            found = self.lookup(apartment)
            if found is None:
                raise KeyError(apartment)
            apartment = found
        plan = list(apartment.extensions)
        if self.concierge is not None:
            plan += [e for e in self.concierge.extensions if e not in plan]
        return tuple(plan)

    def __len__(self) -> int:
        return len(self.apartments)


def parse_directory(text: str, path: str) -> Directory:
    """Check and build a directory from the text of ``path``."""
    apartments: dict[str, Apartment] = {}
    first_seen: dict[str, int] = {}
    concierge: Apartment | None = None
    header_seen = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            (cells,) = csv.reader([line], strict=True)
        except csv.Error as e:
            raise DirectoryError(path, number, f"not valid CSV ({e})") from None
        cells = [cell.strip() for cell in cells]
        if not header_seen:
            if tuple(c.lower() for c in cells) != HEADER:
                raise DirectoryError(
                    path,
                    number,
                    f"the first row must be the header {','.join(HEADER)!r},"
                    f" not {line.strip()!r}",
                )
            header_seen = True
            continue
        if len(cells) != len(HEADER):
            raise DirectoryError(
                path,
                number,
                f"expected {len(HEADER)} columns ({','.join(HEADER)}),"
                f" found {len(cells)}",
            )
        key, name, extensions_text = cells
        entry = Apartment(
            number=key,
            name=_check_name(name, path, number),
            extensions=_parse_extensions(extensions_text, path, number),
        )
        if key == CONCIERGE:
            if concierge is not None:
                raise DirectoryError(
                    path,
                    number,
                    f"a second concierge row (the first is on line"
                    f" {first_seen[CONCIERGE]})",
                )
            concierge = entry
            first_seen[CONCIERGE] = number
            continue
        if _APARTMENT.fullmatch(key) is None:
            raise DirectoryError(
                path,
                number,
                f"apartment {key!r} must be 1 to 10 digits (what a visitor can"
                f" type on the keypad), or {CONCIERGE!r}",
            )
        if key in apartments:
            raise DirectoryError(
                path,
                number,
                f"apartment {key} is listed twice (first on line {first_seen[key]})",
            )
        apartments[key] = entry
        first_seen[key] = number
    if not header_seen:
        raise DirectoryError(path, None, "the file has no header row")
    if not apartments:
        raise DirectoryError(path, None, "the directory lists no apartments")
    return Directory(source=path, apartments=apartments, concierge=concierge)


def _check_name(name: str, path: str, line: int) -> str:
    if not name:
        raise DirectoryError(path, line, "the name is empty")
    if len(name) > _MAX_NAME:
        raise DirectoryError(path, line, f"the name is over {_MAX_NAME} characters")
    if not name.isprintable():
        raise DirectoryError(path, line, f"the name {name!r} has control characters")
    return name


def _parse_extensions(text: str, path: str, line: int) -> tuple[str, ...]:
    extensions = [e for e in _SEPARATOR.split(text) if e]
    if not extensions:
        raise DirectoryError(path, line, "no extensions to ring")
    for extension in extensions:
        if _EXTENSION.fullmatch(extension) is None:
            raise DirectoryError(
                path,
                line,
                f"extension {extension!r} is not dial-string safe (letters,"
                f" digits, '_', '.', '*', '#', '-', a leading '+'; at most 40)",
            )
    if len(set(extensions)) != len(extensions):
        raise DirectoryError(path, line, "an extension is listed twice")
    return tuple(extensions)


def load_directory(path: str) -> Directory:
    """Read and check the directory file at ``path``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DirectoryError(path, None, f"cannot be read ({e.strerror})") from None
    try:
        # utf-8-sig: spreadsheets often save CSV with a byte-order mark.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DirectoryError(path, line, "not UTF-8 text") from None
    return parse_directory(text, path)


class DirectoryService(Service):
    """
    The directories in use, one per gate plus a default, reloadable.

    Files are loaded when the service is built, so a bad file stops the
    server before it answers anyone; :meth:`reload` (SIGHUP) swaps in each
    file that still checks out and keeps the previous version of any that
    does not.
    """

    _log = Logger()

    def __init__(self, default: str, gates: Mapping[str, str] | None = None) -> None:
        self._paths: dict[str | None, str] = {None: default}
        for gate, path in (gates or {}).items():
            if not isinstance(gate, str) or _GATE.fullmatch(gate) is None:
                raise DirectoryError(
                    path,
                    None,
                    f"gate name {gate!r} must be letters, digits, '_', '.', '-'",
                )
            self._paths[gate] = path
        self._directories: dict[str | None, Directory] = {
            gate: load_directory(path) for gate, path in self._paths.items()
        }

    @property
    def gates(self) -> tuple[str, ...]:
        """Gates that have a directory of their own."""
        return tuple(sorted(g for g in self._paths if g is not None))

    def for_gate(self, gate: str | None = None) -> Directory:
        """
        The current directory for ``gate``; the default for None or unknown.

        A visit should call this once and keep the result.
        """
        directory = self._directories.get(gate)
        if directory is None:
            if gate is not None:
                self._log.warn(
                    "gate {gate} has no directory of its own; using the default",
                    gate=gate,
                )
            directory = self._directories[None]
        return directory

    @property
    def default(self) -> Directory:
        """The directory for calls whose gate is unknown."""
        return self._directories[None]

    def reload(self) -> list[DirectoryError]:
        """Reload every file; returns (and logs) the errors of those kept old."""
        errors = []
        for gate, path in self._paths.items():
            try:
                directory = load_directory(path)
            except DirectoryError as e:
                errors.append(e)
                self._log.error(
                    "directory for {gate} not reloaded, keeping the previous"
                    " one: {error}",
                    gate=gate or "default",
                    error=str(e),
                )
                continue
            self._directories[gate] = directory
            self._log.info(
                "directory for {gate} reloaded from {path}: {count} apartments",
                gate=gate or "default",
                path=path,
                count=len(directory),
            )
        return errors

    def startService(self) -> None:
        super().startService()
        for gate, directory in self._directories.items():
            concierge = directory.concierge
            self._log.info(
                "directory for {gate} from {path}: {count} apartments,"
                " concierge {concierge}",
                gate=gate or "default",
                path=directory.source,
                count=len(directory),
                concierge="|".join(concierge.extensions) if concierge else "none",
            )
