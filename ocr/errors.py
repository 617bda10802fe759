"""Typed errors of the image layer: each says what is wrong with the *input*, not where it broke."""


class DocumentError(Exception):
    """The input file cannot be digitized. `code` is a stable, machine-readable status."""

    code = "unreadable"


class EmptyDocument(DocumentError):
    code = "empty"


class NotADocument(DocumentError):
    code = "not_a_document"


class EncryptedDocument(DocumentError):
    code = "encrypted"


class TruncatedDocument(DocumentError):
    code = "truncated"


class ImageBomb(DocumentError):
    code = "too_large"


class TooManyPages(DocumentError):
    code = "too_many_pages"


class CorruptPage(DocumentError):
    """A page whose scan cannot be decoded by us or by poppler (a corrupt image stream)."""

    code = "corrupt"


class PageTooComplex(DocumentError):
    """A page that takes poppler longer than `DecodeLimits.render_seconds` to draw (e.g. hundreds of
    thousands of vector strokes): stopped, so that one page cannot hold a worker for minutes."""

    code = "too_complex"


class PageTooSmall(DocumentError):
    """A page with too few pixels to hold a line of text or a code (a 1x1 or 1x20000 image)."""

    code = "too_small"


class ToolError(Exception):
    """An external program (tesseract, pdftoppm, ...) failed on input it should have handled."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(f"{tool}: {message}")
        self.tool = tool
