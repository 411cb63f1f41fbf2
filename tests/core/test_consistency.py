"""Things that must agree across files: stage order, generated protobuf code."""

import re
import tempfile
from pathlib import Path

import pytest

from swqos_core.pipeline import STAGE_NAMES

ROOT = Path(__file__).parents[2]


def test_stage_order_is_the_same_in_code_readme_and_docs():
    arrow_line = " → ".join(STAGE_NAMES)
    assert arrow_line in (ROOT / "docs" / "architecture.md").read_text()
    readme = (ROOT / "README.md").read_text()
    diagram = [s for s in re.findall(r"\s(\w+):", readme.split("```")[3]) if s in STAGE_NAMES]
    assert diagram == list(STAGE_NAMES)


def _generate_fresh(tmp: str) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.generate(Path(tmp))


# Version stamps of the protoc / grpcio-tools that ran: the only lines allowed to differ.
_STAMPS = re.compile(r"^# Protobuf Python Version: .*$|^\s+\d+,$|^GRPC_GENERATED_VERSION = .*$", re.MULTILINE)


@pytest.mark.parametrize("name", ["signer_pb2.py", "signer_pb2.pyi", "signer_pb2_grpc.py"])
def test_checked_in_protobuf_module_matches_the_proto(name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _generate_fresh(tmp)
        fresh = Path(tmp, name).read_text()
    checked_in = (ROOT / "proto" / "swqos_proto" / name).read_text()
    assert _STAMPS.sub("", fresh) == _STAMPS.sub("", checked_in), f"{name} is stale: run python proto/generate.py"


def test_grpc_stub_is_importable_as_shipped_and_names_the_methods() -> None:
    from swqos_proto import IDENTITY_METHOD, SIGN_METHOD, signer_pb2_grpc

    source = (ROOT / "proto" / "swqos_proto" / "signer_pb2_grpc.py").read_text()
    assert "from swqos_proto import signer_pb2" in source and "from swqos.v1" not in source
    assert f"'{SIGN_METHOD}'" in source and f"'{IDENTITY_METHOD}'" in source
    assert hasattr(signer_pb2_grpc, "SignerStub") and hasattr(signer_pb2_grpc, "add_SignerServicer_to_server")
