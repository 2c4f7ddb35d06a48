"""Output for a person at a terminal: colour and a progress bar, each only when the stream is a
terminal, and colour only where NO_COLOR is unset (no-color.org) and the terminal is not `dumb`."""
from __future__ import annotations

import os
import re
import sys

_STYLES = {"bold": "1", "red": "1;31", "green": "1;32", "cyan": "1;36"}
# the parts of a rendered SpecError: `path:line:col: error:`, `note:`, `hint:` and the caret line
_LABEL = re.compile(r"^(.+?:\d+:\d+: )?(error|note|hint):")
_CARETS = re.compile(r"^(\s+\| *)(\^+)$")
_LABEL_STYLE = {"error": "red", "note": "cyan", "hint": "green"}


def colour_on(stream) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def paint(text: str, style: str, stream) -> str:
    return f"\x1b[{_STYLES[style]}m{text}\x1b[0m" if colour_on(stream) else text


def diagnostic(text: str, stream) -> str:
    """A rendered error coloured as compilers do: the location bold, `error:` red, `note:` cyan,
    `hint:` and the carets green."""
    if not colour_on(stream):
        return text
    out = []
    for line in text.split("\n"):
        label, carets = _LABEL.match(line), _CARETS.match(line)
        if label:
            where, word = label.group(1), label.group(2)
            line = ((paint(where, "bold", stream) if where else "") + paint(word + ":", _LABEL_STYLE[word], stream)
                    + line[label.end():])
        elif carets:
            line = carets.group(1) + paint(carets.group(2), "green", stream)
        out.append(line)
    return "\n".join(out)


class Progress:
    """`[######..................] 12/68 resnet50` on one line of standard error, redrawn in place;
    nothing at all where standard error is not a terminal."""
    WIDTH = 24

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.shown = self.stream.isatty()

    def update(self, done: int, label: str = "") -> None:
        """Show `done` of the items finished, the last of them `label`."""
        if self.shown:
            filled = self.WIDTH * done // max(self.total, 1)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r[{bar}] {done}/{self.total} {label}".rstrip() + "\x1b[K")
            self.stream.flush()

    def clear(self) -> None:
        """Erase the bar, before a line is printed where it stands and when the work is over."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
