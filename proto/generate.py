"""Regenerate ``swqos_proto/signer_pb2{.py,.pyi,_grpc.py}`` from ``swqos/v1/signer.proto``.

Needs grpcio-tools (a development dependency only: the generated files are checked in, and a test
keeps them in step with the ``.proto``). Run ``python proto/generate.py``.
"""

import pathlib
import sys
import tempfile

from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
GENERATED = ("signer_pb2.py", "signer_pb2.pyi", "signer_pb2_grpc.py")


def generate(out_dir: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        code = protoc.main([
            "protoc", f"-I{HERE}", f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}",
            "swqos/v1/signer.proto",
        ])
        if code != 0:
            sys.exit(f"protoc failed with exit code {code}")
        for name in GENERATED:
            text = pathlib.Path(tmp, "swqos", "v1", name).read_text()
            if name == "signer_pb2_grpc.py":
                # protoc writes the import for the proto's own directory; the messages ship as swqos_proto.
                text = text.replace("from swqos.v1 import signer_pb2 as", "from swqos_proto import signer_pb2 as")
                text = "# ruff: noqa\n" + text  # generated code, like signer_pb2.py (excluded in pyproject)
            pathlib.Path(out_dir, name).write_text(text)


if __name__ == "__main__":
    generate(HERE / "swqos_proto")
