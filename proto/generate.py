"""Regenerate ``swqos_proto/signer_pb2.py`` from ``swqos/v1/signer.proto`` (needs grpcio-tools)."""

import pathlib
import shutil
import sys
import tempfile

from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent


def generate(out_dir: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        code = protoc.main(
            ["protoc", f"-I{HERE}", f"--python_out={tmp}", f"--pyi_out={tmp}", "swqos/v1/signer.proto"]
        )
        if code != 0:
            sys.exit(f"protoc failed with exit code {code}")
        for name in ("signer_pb2.py", "signer_pb2.pyi"):
            shutil.copyfile(pathlib.Path(tmp, "swqos", "v1", name), out_dir / name)


if __name__ == "__main__":
    generate(HERE / "swqos_proto")
