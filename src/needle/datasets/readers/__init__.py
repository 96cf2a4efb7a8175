"""Readers of the raw sources that feature collections are built from.

Each reader turns files into plain Python objects (documents, sentences,
texts, tables) and reports bad input with the file (and line) it is in; none of them
knows about tokenizers or labels.
"""

from needle.datasets.readers.conllu import UDDocument, UDSentence, find_conllu_files, is_conllu, read_conllu
from needle.datasets.readers.python_files import SourceFile, find_python_files, read_python_source
from needle.datasets.readers.tables import is_frame, read_table
from needle.datasets.readers.text import read_lines, read_paragraphs, read_text, read_text_documents

__all__ = [
    "SourceFile",
    "UDDocument",
    "UDSentence",
    "find_conllu_files",
    "find_python_files",
    "is_conllu",
    "is_frame",
    "read_conllu",
    "read_lines",
    "read_paragraphs",
    "read_python_source",
    "read_table",
    "read_text",
    "read_text_documents",
]
