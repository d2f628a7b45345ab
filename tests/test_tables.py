"""Reading and writing data files for the command line: formats, headers, column selection and error messages."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from torchnf.tables import EXTENSIONS, DataFileError, Table, read_table, write_table

TEXT_EXTENSIONS = [".csv", ".tsv", ".tab", ".txt"]


def write(tmp_path: Path, name: str, text: str) -> Path:
    """A file ``name`` in ``tmp_path`` holding ``text`` exactly (no newline translation)."""
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def awkward_floats() -> np.ndarray:
    """Float64 values whose text forms are easy to get wrong: tiny, huge, negative zero, many digits."""
    rng = np.random.default_rng(0)
    special = [0.1, 1 / 3, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1e-300, 123456789.125]
    return np.concatenate([rng.normal(size=40) * 10.0 ** rng.integers(-30, 30, size=40), special]).reshape(-1, 2)


# ---- round trips ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extension", [*TEXT_EXTENSIONS, ".npy", ".npz", ".CSV", ".Npy"])
def test_round_trip_is_exact(tmp_path: Path, extension: str) -> None:
    """What write_table writes, read_table reads back bit for bit, with the column names for text formats."""
    x = awkward_floats()
    path = tmp_path / f"data{extension}"
    write_table(path, x, ["alpha", "beta gamma"])
    table = read_table(path)
    assert isinstance(table, Table)
    assert table.values.dtype == np.float64
    np.testing.assert_array_equal(table.values, x)
    assert np.signbit(table.values).tolist() == np.signbit(x).tolist()  # -0.0 survives
    assert table.dropped_rows == []
    if extension.lower() in TEXT_EXTENSIONS:
        assert table.columns == ["alpha", "beta gamma"]
    else:
        assert table.columns == ["0", "1"]
    assert path.exists() and not Path(str(path) + ".npy").exists()  # NumPy added no extension of its own


@pytest.mark.parametrize("extension", TEXT_EXTENSIONS)
def test_round_trip_of_awkward_names(tmp_path: Path, extension: str) -> None:
    """Names with quotes, separators, spaces or a leading # are quoted so that they read back unchanged."""
    names = ['say "hi"', "a,b", "tab\there", "#hash", "x y"]
    path = tmp_path / f"names{extension}"
    write_table(path, np.arange(10.0).reshape(2, 5), names)
    table = read_table(path)
    assert table.columns == names
    np.testing.assert_array_equal(table.values, np.arange(10.0).reshape(2, 5))


def test_round_trip_without_names_and_of_one_column(tmp_path: Path) -> None:
    """Without names there is no header; a 1-D array is one column; float32 text reads back as the same float32."""
    x = np.linspace(-1, 1, 7, dtype=np.float32)
    write_table(tmp_path / "x.csv", x)
    assert (tmp_path / "x.csv").read_text().splitlines()[0] == "-1.0"
    table = read_table(tmp_path / "x.csv")
    assert table.columns == ["0"] and table.values.shape == (7, 1)
    np.testing.assert_array_equal(table.values[:, 0].astype(np.float32), x)


def test_names_that_are_all_numbers_are_not_written(tmp_path: Path) -> None:
    """A header of numbers would read back as a data row, so write_table leaves it out."""
    write_table(tmp_path / "x.csv", np.ones((2, 2)), ["0", "1"])
    assert read_table(tmp_path / "x.csv").values.shape == (2, 2)


def test_write_errors(tmp_path: Path) -> None:
    """Unknown extension, missing folder, wrong number of names, non-numeric values, 3-D text: each refused."""
    with pytest.raises(DataFileError, match=r"out\.xlsx.*'\.xlsx'.*\.csv, \.tsv, \.tab, \.txt, \.npy and \.npz"):
        write_table(tmp_path / "out.xlsx", np.ones(2))
    with pytest.raises(DataFileError, match=r"the folder .*missing does not exist"):
        write_table(tmp_path / "missing" / "out.csv", np.ones(2))
    with pytest.raises(DataFileError, match="2 column names given for values with 3 columns"):
        write_table(tmp_path / "out.csv", np.ones((2, 3)), ["a", "b"])
    with pytest.raises(DataFileError, match="dtype <U1"):
        write_table(tmp_path / "out.npy", np.array(["a"]))
    with pytest.raises(DataFileError, match=r"shape \(2, 3, 4\).*use \.npy or \.npz"):
        write_table(tmp_path / "out.csv", np.ones((2, 3, 4)))
    with pytest.raises(DataFileError, match="line breaks"):
        write_table(tmp_path / "out.csv", np.ones((2, 1)), ["a\nb"])
    assert not (tmp_path / "out.csv").exists()  # nothing written when the arguments are refused


# ---- headers, comments, separators ----------------------------------------------------------------------------


def test_header_is_detected(tmp_path: Path) -> None:
    """A first row with a non-number is a header; quoted names keep their commas and spaces."""
    table = read_table(write(tmp_path, "h.csv", '"x, first", "y"\n1,2\n3,4\n'))
    assert table.columns == ["x, first", "y"]
    np.testing.assert_array_equal(table.values, [[1, 2], [3, 4]])


def test_no_header_gives_index_names(tmp_path: Path) -> None:
    """A first row of numbers (nan and scientific notation included) is data; columns are named by index."""
    table = read_table(write(tmp_path, "n.csv", "1e3,-2.5\n3,4\n"))
    assert table.columns == ["0", "1"]
    np.testing.assert_array_equal(table.values, [[1000, -2.5], [3, 4]])


def test_comments_blank_lines_bom_and_crlf(tmp_path: Path) -> None:
    """Comments and blank lines are skipped but still counted in line numbers; BOM and CRLF are fine."""
    text = "\ufeff# made by hand\r\n\r\nx,y\r\n  # indented comment\r\n1,2\r\n\r\n3,4\r\n"
    table = read_table(write(tmp_path, "c.csv", text))
    assert table.columns == ["x", "y"]
    np.testing.assert_array_equal(table.values, [[1, 2], [3, 4]])
    with pytest.raises(DataFileError, match=r"^line 7 of .*c2\.csv has a value"):
        read_table(write(tmp_path, "c2.csv", text.replace("3,4", "3,oops")))


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("tabs.tsv", "a\tb c\n1\t2\n"),
        ("tabs.tab", "a\tb c\n1\t2\n"),
        ("tabs.txt", "a\tb c\n1\t2\n"),
        ("commas.txt", "a,b c\n1,2\n"),
        ("spaces.txt", 'a   "b c"\n1 \t 2\n'),
    ],
)
def test_separators(tmp_path: Path, name: str, text: str) -> None:
    """TSV uses tabs; .txt sniffs tabs, commas or runs of whitespace."""
    table = read_table(write(tmp_path, name, text))
    assert table.columns == ["a", "b c"]
    np.testing.assert_array_equal(table.values, [[1, 2]])


def test_unclosed_quote(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"line 2 of .*q\.csv has a misplaced or unclosed quote"):
        read_table(write(tmp_path, "q.csv", 'a,b\n"1,2\n'))


# ---- column selection -----------------------------------------------------------------------------------------


def test_select_by_name_and_index(tmp_path: Path) -> None:
    """Names, int indices and digit strings select columns in the order given; other columns may hold text."""
    path = write(tmp_path, "s.csv", "label,x,y,z\ncat,1,2,3\ndog,4,5,6\n")
    by_name = read_table(path, columns=["z", "x"])
    assert by_name.columns == ["z", "x"]
    np.testing.assert_array_equal(by_name.values, [[3, 1], [6, 4]])
    by_index = read_table(path, columns=[3, "1"])
    assert by_index.columns == ["z", "x"]
    np.testing.assert_array_equal(by_index.values, by_name.values)
    assert read_table(path, columns="y").columns == ["y"]
    np.testing.assert_array_equal(read_table(path, columns=np.array([2])).values, [[2], [5]])


def test_select_without_header(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "1,2,3\n4,5,6\n")
    table = read_table(path, columns=["2", 0])
    assert table.columns == ["2", "0"]
    np.testing.assert_array_equal(table.values, [[3, 1], [6, 4]])
    with pytest.raises(DataFileError, match=r"has no header, so its columns are selected by 0-based index \(0 to 2\)"):
        read_table(path, columns=["x"])


def test_selection_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "x1,x2,x2\n1,2,3\n")
    with pytest.raises(
        DataFileError, match=r"no column named 'X1' \(did you mean 'x1'\?\); its columns are 'x1', 'x2' and 'x2'$"
    ):
        read_table(path, columns=["X1"])
    with pytest.raises(DataFileError, match=r"no column named 'x_2' \(did you mean 'x2'\?\)"):
        read_table(path, columns=["x_2"])
    with pytest.raises(DataFileError, match=r"no column named 'weight'; its columns"):
        read_table(path, columns=["weight"])
    with pytest.raises(DataFileError, match=r"column index 3 is out of range: .*has 3 columns, numbered from 0 to 2"):
        read_table(path, columns=[3])
    with pytest.raises(DataFileError, match="column index -1 is out of range"):
        read_table(path, columns=[-1])
    with pytest.raises(DataFileError, match=r"more than one column 'x2' \(columns 1 and 2, counted from 0\)"):
        read_table(path, columns=["x2"])
    with pytest.raises(DataFileError, match=r"column 'x1' of .* is selected more than once"):
        read_table(path, columns=["x1", 0])
    with pytest.raises(DataFileError, match="the list of columns is empty"):
        read_table(path, columns=[])
    with pytest.raises(DataFileError, match="by name or by 0-based index, got True"):
        read_table(path, columns=[True])


# ---- bad text files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "x,y\n1,2\n3,abc\n",
            r"^line 3 of .*bad\.csv has a value that is not a finite number: line 3, column 'y': 'abc'",
        ),
        ("x,y\n1,2\n\n3,\n", r"^line 4 of .*: line 4, column 'y': empty"),
        ("x,y\n1,nan\n3,4\n", r"^line 2 of .*: line 2, column 'y': 'nan'"),
        ("x,y\n1,2\n-inf,4\n", r"^line 3 of .*: line 3, column 'x': '-inf'"),
        ("1,2\n3,x\n", r"^line 2 of .*: line 2, column 1: 'x' \(columns counted from 0\); fix it, or drop"),
        ("x,y\n1,2\n3,4,5\n", r"^line 3 of .*bad\.csv has 3 fields, but the header on line 1 has 2"),
        ("1,2\n\n3\n", r"^line 3 of .*bad\.csv has 1 field, but line 1 has 2"),
        ("", r"bad\.csv is empty$"),
        ("\n# nothing\n\n", r"bad\.csv holds no data: it is empty or has only blank lines and comments"),
        ("# header\nx,y\n", r"bad\.csv has a header \(line 2\) but no data rows"),
    ],
    ids=[
        "non-number",
        "empty-field",
        "nan",
        "inf",
        "no-header",
        "ragged",
        "ragged-short",
        "empty",
        "comments-only",
        "header-only",
    ],
)
def test_bad_csv(tmp_path: Path, text: str, message: str) -> None:
    """Each defect is refused with a message naming the file and the line, as a text editor counts lines."""
    with pytest.raises(DataFileError, match=message):
        read_table(write(tmp_path, "bad.csv", text))


def test_many_invalid_rows_are_listed_with_a_count(tmp_path: Path) -> None:
    rows = ["x,y"] + [f"{i},{'bad' if i % 3 == 0 else i}" for i in range(30)]
    path = write(tmp_path, "many.csv", "\n".join(rows) + "\n")
    message = (
        r"^lines 2, 5, 8, 11, 14 and 5 more \(10 rows\) of .*many\.csv have values that are not finite numbers: "
        r"line 2, column 'y': 'bad'; line 5, column 'y': 'bad'; line 8, column 'y': 'bad'; fix them"
    )
    with pytest.raises(DataFileError, match=message):
        read_table(path)


def test_invalid_values_outside_the_selection_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "x,y\n1,\n2,nan\n3,4\n")
    np.testing.assert_array_equal(read_table(path, columns=["x"]).values, [[1], [2], [3]])


def test_drop_invalid(tmp_path: Path) -> None:
    """Exactly the rows with a bad selected value are dropped, and reported by line number."""
    text = "# data\nx,y\n1,2\n3,abc\n\n5,6\n,8\n9,inf\n10,nan\n11,12\n"
    table = read_table(write(tmp_path, "d.csv", text), drop_invalid=True)
    assert table.dropped_rows == [4, 7, 8, 9]
    np.testing.assert_array_equal(table.values, [[1, 2], [5, 6], [11, 12]])
    assert read_table(tmp_path / "d.csv", columns=["x"], drop_invalid=True).dropped_rows == [7]


def test_drop_invalid_leaving_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"no rows of .*all\.csv are left.*every one of the 2 data rows"):
        read_table(write(tmp_path, "all.csv", "x\nnan\nfoo\n"), drop_invalid=True)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"x,y\n1,2\ncaf\xe9,3\n")
    with pytest.raises(DataFileError, match=r"line 3 of .*latin\.csv is not UTF-8 text"):
        read_table(path)


# ---- NPY and NPZ ----------------------------------------------------------------------------------------------


def test_pickled_npy_is_refused_without_running_code(tmp_path: Path) -> None:
    """An object array needs pickle to load; it is refused, and the pickle inside is never executed."""
    marker = tmp_path / "executed"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([Exploit(str(marker)), 1], dtype=object), allow_pickle=True)
    with pytest.raises(DataFileError, match=r"evil\.npy holds Python objects \(dtype object\).*pickle"):
        read_table(path)
    assert not marker.exists()
    np.load(path, allow_pickle=True)  # the exploit is real: loading it with pickle runs its code
    assert marker.exists()


def test_pickled_npz_member_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.npz"
    np.savez(path, values=np.array([Exploit(str(marker))], dtype=object))
    with pytest.raises(DataFileError, match="dtype object"):
        read_table(path)
    assert not marker.exists()


class Exploit:
    """Unpickling this creates the folder ``path``, so a test can see whether pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (self.path,))


def test_npz_keys(tmp_path: Path) -> None:
    path = tmp_path / "several.npz"
    np.savez(path, train=np.ones((3, 2)), test=np.zeros((2, 2)))
    with pytest.raises(DataFileError, match=r"several\.npz holds 2 arrays, 'train' and 'test'; choose one with key"):
        read_table(path)
    np.testing.assert_array_equal(read_table(path, key="test").values, np.zeros((2, 2)))
    with pytest.raises(DataFileError, match=r"no array named 'val'; its arrays are 'train' and 'test'"):
        read_table(path, key="val")
    with pytest.raises(DataFileError, match=r"key='train' picks an array from an \.npz archive, but .*x\.csv is not"):
        read_table(write(tmp_path, "x.csv", "1\n"), key="train")


def test_npy_invalid_rows_and_selection(tmp_path: Path) -> None:
    """NaN and inf rows of an array are named by row counted from 1; columns are selected by index."""
    x = np.array([[1.0, 2.0, 3.0], [np.nan, 5.0, 6.0], [7.0, 8.0, 9.0], [1.0, 2.0, -np.inf]])
    path = tmp_path / "x.npy"
    np.save(path, x)
    message = (
        r"^rows 2 and 4 \(2 rows\) of .*x\.npy \(rows counted from 1\) have values that are not finite numbers: "
        r"row 2, column 0: nan; row 4, column 2: -inf"
    )
    with pytest.raises(DataFileError, match=message):
        read_table(path)
    table = read_table(path, drop_invalid=True)
    assert table.dropped_rows == [2, 4]
    np.testing.assert_array_equal(table.values, x[[0, 2]])
    selected = read_table(path, columns=[1, "0"], drop_invalid=True)  # the -inf in column 2 is not selected
    assert selected.columns == ["1", "0"]
    assert selected.dropped_rows == [2]
    np.testing.assert_array_equal(selected.values, x[[0, 2, 3]][:, [1, 0]])
    with pytest.raises(DataFileError, match=r"^row 4 of .*: row 4, column 2: -inf; fix it"):
        read_table(path, columns=[2, 1])  # the column is named by its index in the file, not in the selection
    with pytest.raises(DataFileError, match="column index 3 is out of range"):
        read_table(path, columns=[3])


@pytest.mark.parametrize("array", [np.arange(6).reshape(3, 2), np.array([True, False, True])], ids=["int", "bool"])
def test_ints_and_bools_become_float64(tmp_path: Path, array: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", array)
    table = read_table(tmp_path / "a.npy")
    assert table.values.dtype == np.float64
    np.testing.assert_array_equal(table.values, array.reshape(len(array), -1).astype(np.float64))


def test_3d_npy_keeps_its_shape(tmp_path: Path) -> None:
    x = np.arange(24.0).reshape(2, 3, 4)
    np.save(tmp_path / "images.npy", x)
    table = read_table(tmp_path / "images.npy")
    assert table.values.shape == (2, 3, 4) and table.columns == ["values"]
    np.testing.assert_array_equal(table.values, x)
    with pytest.raises(DataFileError, match=r"shape \(2, 3, 4\)"):
        read_table(tmp_path / "images.npy", columns=[0])
    x[1, 2, 3] = np.inf
    np.save(tmp_path / "images.npy", x)
    assert read_table(tmp_path / "images.npy", drop_invalid=True).values.shape == (1, 3, 4)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array(["a", "b"]), r"holds text \(dtype <U1\), not numbers"),
        (np.ones(2, dtype=complex), r"holds complex numbers \(dtype complex128\)"),
        (np.float64(3.0), "holds a single number"),
        (np.zeros((0, 2)), r"holds no rows: its array has shape \(0, 2\)"),
    ],
    ids=["strings", "complex", "scalar", "no-rows"],
)
def test_unusable_arrays(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(DataFileError, match=message):
        read_table(tmp_path / "a.npy")


def test_files_that_are_not_npy_or_npz(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"fake\.npy is not a NumPy \.npy file"):
        read_table(write(tmp_path, "fake.npy", "1,2\n"))
    with pytest.raises(DataFileError, match=r"fake\.npz is not a NumPy \.npz archive"):
        read_table(write(tmp_path, "fake.npz", "1,2\n"))
    np.save(tmp_path / "cut.npy", np.ones(100))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "cut.npy").read_bytes()[:300])
    with pytest.raises(DataFileError, match=r"cut\.npy is damaged or truncated"):
        read_table(tmp_path / "cut.npy")


# ---- paths ----------------------------------------------------------------------------------------------------


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    listing = re.escape(", ".join(EXTENSIONS[:-1]) + " and " + EXTENSIONS[-1])
    with pytest.raises(DataFileError, match=rf"data\.xlsx: its extension '\.xlsx' is not supported; .*{listing}"):
        read_table(write(tmp_path, "data.xlsx", "1\n"))
    with pytest.raises(DataFileError, match="it has no extension"):
        read_table(tmp_path / "data")
    with pytest.raises(DataFileError, match=r"^file not found: .*nowhere\.csv$"):
        read_table(tmp_path / "nowhere.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(DataFileError, match=r"folder\.csv is a folder"):
        read_table(tmp_path / "folder.csv")


def test_errors_are_value_errors_on_one_line(tmp_path: Path) -> None:
    """DataFileError is a ValueError, and its message fits a one-line CLI error."""
    with pytest.raises(ValueError, match="abc") as caught:
        read_table(write(tmp_path, "x.csv", "1\nabc\n\n"))
    assert "\n" not in str(caught.value)
