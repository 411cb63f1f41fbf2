"""Things that must agree across files: stage order, generated protobuf code."""

import re
import tempfile
from pathlib import Path

from swqos_core.pipeline import STAGES, Pipeline

ROOT = Path(__file__).parents[2]


def test_stage_order_is_the_same_in_code_readme_and_docs():
    arrow_line = " → ".join(STAGES)
    assert arrow_line in (ROOT / "docs" / "architecture.md").read_text()
    readme = (ROOT / "README.md").read_text()
    diagram = [s for s in re.findall(r"\s(\w+):", readme.split("```")[3]) if s in STAGES]
    assert diagram == list(STAGES)


def test_pipeline_fields_follow_the_stage_order():
    fields = [f for f in Pipeline.__dataclass_fields__ if f in STAGES]
    assert fields == [s for s in STAGES if s in fields]


def test_checked_in_protobuf_module_matches_the_proto():
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    with tempfile.TemporaryDirectory() as tmp:
        generate.generate(Path(tmp))
        fresh = Path(tmp, "signer_pb2.py").read_text()
    checked_in = (ROOT / "proto" / "swqos_proto" / "signer_pb2.py").read_text()
    strip = re.compile(r"^# Protobuf Python Version: .*$|^\s+\d+,$", re.MULTILINE)  # protoc version stamp
    assert strip.sub("", fresh) == strip.sub("", checked_in)
