"""Input bytes to text, line by line: UTF-8, the encoding ``--encoding`` names, or cp1252 for a
file that is not UTF-8, without ever changing a line's meaning behind the user's back.

Without ``--encoding`` a file is read as UTF-8 (a BOM is dropped). At the first line that is not
UTF-8, the decoder switches the file to cp1252 (Excel's "CSV (separado por vírgulas)" on
Brazilian Windows) only when that cannot change what was already read:

* every earlier line was plain ASCII (which reads the same in both), and
* the file did not start with a UTF-8 BOM (which declares UTF-8).

Otherwise the file mixes encodings and the line is malformed, as it was before this fallback.
After a switch, a later line whose bytes are *also* valid UTF-8 (and not ASCII) is malformed
too, as ambiguous: "SÃ£o" in cp1252 is "São" in UTF-8, and only the user knows which was meant.
``--encoding ENC`` reads every line as ENC, with no guessing.

Lines are decoded one at a time (a file is streamed, and stdin cannot be read twice), so the
switch happens where the first non-UTF-8 line is, and the reader says so once.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from typing import IO

#: The encoding a file that is not UTF-8 is read as, when ``--encoding`` is not given.
FALLBACK = "cp1252"
FALLBACK_NAME = "cp1252 (Windows-1252)"
BOM = b"\xef\xbb\xbf"
# Bytes that could not be decoded survive as lone surrogates (errors="surrogateescape").
_UNDECODED = re.compile("[\udc80-\udcff]")
_EXCEL_HINT = "save the file as UTF-8 ('CSV UTF-8' in Excel) or pass --encoding"


def check_encoding(name: str) -> str:
    """The codec's canonical name for ``--encoding``; ValueError for an unknown codec or one
    that does not write ASCII as ASCII (UTF-16, UTF-32: lines and separators would not be
    found in the bytes)."""
    try:
        codec = codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown encoding {name!r} (try utf-8, cp1252 or latin-1)") from None
    sample = '\n\r,;"{}:0aZ'
    try:
        same = sample.encode(codec.name) == sample.encode("ascii")
    except (UnicodeError, LookupError):
        same = False
    if not same:
        raise ValueError(f"{name}: not supported, as it does not write ASCII as ASCII")
    return codec.name


def visible(text: str) -> str:
    """``text`` with each byte that could not be decoded shown as ``\\xNN``."""
    return _UNDECODED.sub(lambda m: f"\\x{ord(m[0]) - 0xDC00:02x}", text)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class LineDecoder:
    """Decodes the lines of one file by the rule in this module's docstring.

    ``decode`` always returns text (undecodable bytes as lone surrogates); the lines it could
    not decode soundly are kept with the reason, for the reader to report with ``problem``.
    """

    def __init__(self, encoding: str | None = None) -> None:
        #: None: UTF-8, with the cp1252 fallback.
        self._chosen = encoding
        self._encoding = encoding or "utf-8"
        self._bom = False
        #: The first line with UTF-8 text beyond ASCII (the fallback is then closed).
        self._utf8_at: int | None = None
        #: The line at which the file was switched to the fallback, if it was.
        self.switched_at: int | None = None
        self._announced = False
        self._problems: dict[int, str] = {}

    def decode(self, line: bytes, number: int) -> str:
        """Line ``number`` (from 1) as text."""
        if number == 1 and line.startswith(BOM) and self._encoding == "utf-8":
            line = line[len(BOM) :]
            self._bom = True
        try:
            text = line.decode(self._encoding)
        except UnicodeDecodeError as exc:
            if self._may_switch():
                try:
                    text = line.decode(FALLBACK)
                except UnicodeDecodeError:
                    pass  # neither: reported below
                else:
                    self._encoding, self.switched_at = FALLBACK, number
                    return text
            self._problems[number] = self._undecodable(line[exc.start])
            return line.decode(self._encoding, "surrogateescape")
        if not line.isascii():
            if self.switched_at is not None and _is_utf8(line):
                self._problems[number] = (
                    f"ambiguous: this line is valid UTF-8, but line {self.switched_at} made the"
                    f" file read as {FALLBACK}; pass --encoding utf-8 or --encoding {FALLBACK}"
                )
            elif self._encoding == "utf-8" and self._utf8_at is None:
                self._utf8_at = number
        return text

    def _may_switch(self) -> bool:
        return (
            self._chosen is None
            and self.switched_at is None
            and not self._bom
            and (self._utf8_at is None)
        )

    def _undecodable(self, byte: int) -> str:
        what = f"(byte 0x{byte:02x})"
        if self._chosen is not None:
            return f"not {self._chosen} {what}, which --encoding says the file is"
        if self.switched_at is not None:
            return (
                f"not {FALLBACK} {what}, which line {self.switched_at} made the file read as;"
                " pass --encoding"
            )
        if self._bom:
            return f"not UTF-8 {what}, though the file starts with a UTF-8 BOM; {_EXCEL_HINT}"
        if self._utf8_at is not None:
            return (
                f"not UTF-8 {what}, though line {self._utf8_at} is: the file mixes encodings;"
                f" {_EXCEL_HINT}"
            )
        return f"neither UTF-8 nor {FALLBACK} {what}; pass --encoding"

    def problem(self, first: int, last: int) -> str | None:
        """Why a line from ``first`` to ``last`` could not be decoded soundly (the first such
        line's reason), or None; forgets the lines up to ``last``."""
        found = None
        for number in sorted(n for n in self._problems if n <= last):
            reason = self._problems.pop(number)
            if found is None and number >= first:
                at = f"line {number}: " if first != last else ""
                found = f"{at}{reason}"
        return found

    def notice(self, name: str) -> str | None:
        """Once, after a switch to the fallback: the line that says so."""
        if self.switched_at is None or self._announced:
            return None
        self._announced = True
        return (
            f"{name}: not UTF-8 (line {self.switched_at}); read as {FALLBACK_NAME};"
            " pass --encoding to choose"
        )


class DecodedLines(Iterator[str]):
    """The lines of a binary stream as text, with their line endings (as ``csv`` wants them),
    decoded by ``decoder``. ``number`` is the number of the last line returned, ``bytes_read``
    the bytes of the stream up to its end (for progress). The stream is the caller's to close."""

    def __init__(self, stream: IO[bytes], decoder: LineDecoder) -> None:
        self._lines = iter(stream)
        self.decoder = decoder
        self.number = 0
        self.bytes_read = 0

    def __next__(self) -> str:
        line = next(self._lines)
        self.number += 1
        self.bytes_read += len(line)
        return self.decoder.decode(line, self.number)
