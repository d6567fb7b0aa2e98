"""jointdit_core.safe_paths.file_inside: names from a request never leave their folder (issue: Load Depth read any file)."""

import os

import pytest

from jointdit_core.safe_paths import UnsafeFileName, file_inside


@pytest.fixture()
def folders(tmp_path):
    inside, outside = tmp_path / "input", tmp_path / "elsewhere"
    (inside / "sub").mkdir(parents=True)
    outside.mkdir()
    (inside / "a.png").write_bytes(b"mine")
    (inside / "sub" / "b.png").write_bytes(b"mine too")
    (outside / "secret_depth.npy").write_bytes(b"not yours")
    return inside, outside


def test_names_inside_the_folder_resolve_there(folders):
    inside, _ = folders
    assert file_inside(inside, "a.png") == (inside / "a.png").resolve()
    assert file_inside(inside, "sub/b.png") == (inside / "sub" / "b.png").resolve()
    assert file_inside(inside, "50%25 off.png") == (inside / "50%25 off.png").resolve()  # a literal % is a name, not a path


@pytest.mark.parametrize(
    "name, why",
    [
        ("../elsewhere/secret_depth.npy", "contains '..'"),
        ("sub/../../elsewhere/secret_depth.npy", "contains '..'"),
        ("..\\elsewhere\\secret_depth.npy", "contains '..'"),
        ("ABSOLUTE", "absolute path"),
        ("C:\\Windows\\win.ini", "absolute path"),
        ("..%2Felsewhere%2Fsecret_depth.npy", "contains '..' once URL-decoded"),
        ("%2e%2e/elsewhere/secret_depth.npy", "contains '..' once URL-decoded"),
        ("%252e%252e%252fsecret_depth.npy", "contains '..' once URL-decoded"),
        ("%2Fetc%2Fpasswd", "absolute path once URL-decoded"),
        ("a.png\x00.npy", "NUL character"),
        ("", "no depth file name was given"),
    ],
)
def test_names_that_would_leave_the_folder_are_refused_with_the_reason(folders, name, why):
    inside, outside = folders
    if name == "ABSOLUTE":
        name = str(outside / "secret_depth.npy")
    with pytest.raises(UnsafeFileName) as info:
        file_inside(inside, name, "depth file")
    message = str(info.value)
    assert why in message
    if name:
        assert str(inside.resolve()) in message and "copy the file into that folder" in message


def test_a_symbolic_link_leading_out_is_refused_and_one_staying_inside_is_followed(folders):
    inside, outside = folders
    os.symlink(outside / "secret_depth.npy", inside / "innocent.npy")
    os.symlink(outside, inside / "linked_dir")
    os.symlink(inside / "a.png", inside / "alias.png")
    for name in ("innocent.npy", "linked_dir/secret_depth.npy"):
        with pytest.raises(UnsafeFileName, match="leads outside the folder through a symbolic link") as info:
            file_inside(inside, name)
        assert str(outside) not in str(info.value)  # where the link leads is not told to the requester
    assert file_inside(inside, "alias.png") == (inside / "a.png").resolve()
