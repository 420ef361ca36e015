"""Patient directions in words and letters, and the kaggle_3m layout's own (the one the models were trained on).

Axis codes are nibabel's: the direction an array axis points TO ("S": its index grows towards the top of the
head). The kaggle_3m slices are numbered from inferior to superior (slice 1 at the skull base), their rows run
anterior -> posterior and their columns from the patient's right to left (a radiological display: the face at
the top, the patient's right on the image's left). Volumes read from NIfTI or DICOM are laid out the same way,
and say so through their own affine (``patient.orientation``); pictures and labels take their words from here.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Where the (slice, row, column) axes of a kaggle_3m patient point.
KAGGLE_AXCODES: tuple[str, str, str] = ("S", "P", "L")
OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
WORDS = {"R": "right", "L": "left", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}


def axis_words(code: str) -> str:
    """An axis code -> how the axis runs, in words: "S" -> "inferior → superior"."""
    return f"{WORDS[OPPOSITE[code]]} → {WORDS[code]}"


def slice_label(slice_code: str = KAGGLE_AXCODES[0]) -> str:
    """A slice slider's label named from the data: "Slice (inferior → superior)"."""
    return f"Slice ({axis_words(slice_code)})"


@dataclass(frozen=True)
class EdgeLetters:
    """The patient direction at each edge of a displayed slice."""

    top: str
    bottom: str
    left: str
    right: str

    @staticmethod
    def from_axcodes(row_code: str, column_code: str) -> EdgeLetters:
        """Rows pointing to ``row_code`` put its opposite at the top; likewise columns and the left edge."""
        return EdgeLetters(top=OPPOSITE[row_code], bottom=row_code, left=OPPOSITE[column_code], right=column_code)


#: A kaggle_3m slice: anterior at the top, the patient's right on the image's left.
KAGGLE_EDGES = EdgeLetters.from_axcodes(KAGGLE_AXCODES[1], KAGGLE_AXCODES[2])
