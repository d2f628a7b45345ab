"""Reading and writing numeric data files, for the ``torchnf`` command.

The format is chosen by the file's extension, in upper or lower case:

- ``.csv``: text, fields separated by commas.
- ``.tsv``, ``.tab``: text, fields separated by tabs.
- ``.txt``: text, fields separated by tabs, commas or runs of whitespace; a separator is used when it appears on
  each of the first two data lines (header included), tab first, then comma, otherwise whitespace.
- ``.npy``: one NumPy array. Pickled data is never loaded, so reading a file never runs code from it.
- ``.npz``: a NumPy archive of arrays, never unpickled either; when it holds several arrays, ``key`` picks one.

Text files are UTF-8 (a byte order mark is allowed). Blank lines, and lines whose first non-blank character is
``#``, are skipped; so a header written as a comment (as :func:`numpy.savetxt` does) is skipped too. The first
remaining line is a header when any of its fields is neither empty nor a number; fields may be quoted with
``"`` (a ``"`` inside a quoted field is written twice). A number is anything Python's :class:`float` accepts, so
``nan`` and ``inf`` parse, but they are refused as data like any other value that is not a finite number.

Error messages name line numbers as a text editor shows them (counted from 1, comments and blank lines
included), and the rows of an array counted from 1.

The public API is what this package exports; its modules are internal:

- :mod:`.errors`: :class:`DataFileError` and the wording of its messages.
- :mod:`.formats`: :data:`EXTENSIONS`, and the checks on paths shared by reading and writing.
- :mod:`.table`: :class:`Table`, and the refusing or dropping of invalid rows.
- :mod:`.columns`: column selection by name or index.
- :mod:`.text`: reading delimited text.
- :mod:`.arrays`: reading ``.npy``/``.npz`` with :func:`numpy.load`, and arrays as tables.
- :mod:`.read`, :mod:`.write`: :func:`read_table` and :func:`write_table`.
"""

from .errors import DataFileError
from .formats import EXTENSIONS
from .read import read_table
from .table import Table
from .write import write_table

__all__ = ["EXTENSIONS", "DataFileError", "Table", "read_table", "write_table"]
