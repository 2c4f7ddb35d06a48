"""Errors in a spec. Each carries the span it points at; `render` formats it like a compiler."""
from __future__ import annotations

import difflib
from typing import Iterable, Optional


class SpecError(Exception):
    """A mistake in a .arch spec, located at `path:line:column` (1-based)."""

    def __init__(self, message: str, span=None, hint: Optional[str] = None, source: Optional[str] = None,
                 notes: Iterable = (), quote: bool = True):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.source = source  # the text of span.path, for rendering the line
        self.notes = list(notes)  # (message, span) pairs: "defined here", the import chain, ...
        self.quote = quote  # whether to show the line: not of a file that may not be the user's to show

    @property
    def path(self) -> Optional[str]:
        return self.span.path if self.span else None

    @property
    def line(self) -> Optional[int]:
        return self.span.line if self.span else None

    @property
    def column(self) -> Optional[int]:
        return self.span.column if self.span else None

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        if self.span is None:
            out = [f"error: {self.message}"]
        else:
            out = [f"{self.span.path}:{self.span.line}:{self.span.column}: error: {self.message}"]
            out += _excerpt(self.span, self.source) if self.quote else []
        for note, span in self.notes:
            if span is None:
                out.append(f"note: {note}")
            else:
                out.append(f"{span.path}:{span.line}:{span.column}: note: {note}")
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


EXCERPT_WIDTH = 100  # characters of a line shown under an error


def _excerpt(span, source: Optional[str]) -> list:
    if source is None:
        try:
            with open(span.path, encoding="utf-8") as f:
                source = f.read()
        except (OSError, UnicodeDecodeError):
            return []
    lines = source.split("\n")  # lines as the parser counts them: other line breaks are characters
    if not 1 <= span.line <= len(lines):
        return []
    # one character per column, none that a terminal would act on
    text = "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in lines[span.line - 1].expandtabs(1))
    end = span.end_column if span.end_line == span.line else len(text) + 1
    column, width = span.column, max(1, end - span.column)
    if len(text) > EXCERPT_WIDTH:  # a window of a very long line, around the start of the span
        start = max(0, min(column - 1 - EXCERPT_WIDTH // 3, len(text) - EXCERPT_WIDTH))
        shown = text[start:start + EXCERPT_WIDTH]
        text = ("…" if start else "") + shown + ("…" if start + EXCERPT_WIDTH < len(text) else "")
        column = column - start + (1 if start else 0)
        width = max(1, min(width, len(shown) + 1 - (column - (1 if start else 0))))
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * (len(gutter) - 2) + "| " + " " * (column - 1) + "^" * width]


def did_you_mean(word: str, candidates: Iterable[str]) -> Optional[str]:
    """A hint naming the candidate `word` differs from only in capitals, or else the closest one if
    it is close: a typo, not a different short word (`list` is not a misspelt `split`)."""
    candidates = sorted(set(candidates))
    same = [c for c in candidates if c.lower() == word.lower()]
    close = same or difflib.get_close_matches(word, candidates, n=1, cutoff=0.7)
    return f"did you mean `{close[0]}`?" if close else None


def shorten(text: str, most: int = 80) -> str:
    """`text`, cut to `most` characters with an ellipsis, to quote in a message."""
    return text if len(text) <= most else text[:most - 1] + "…"
