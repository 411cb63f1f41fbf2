import pytest

from swqos_core.files import write_atomic, write_private_file


def test_private_file_is_0600_and_never_overwritten(tmp_path):
    path = tmp_path / "sub" / "key"
    write_private_file(path, b"secret")
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_private_file(path, b"other")
    assert path.read_bytes() == b"secret"


def test_atomic_write_replaces_whole_file_with_the_given_mode(tmp_path):
    path = tmp_path / "state.json"
    write_atomic(path, b"one")
    assert path.stat().st_mode & 0o777 == 0o600
    write_atomic(path, b"two", mode=0o644)
    assert path.read_bytes() == b"two" and path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left behind
