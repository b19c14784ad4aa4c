"""Generate the Python stubs of protos/*.proto (`make protos`, or `python -m protos.build [OUT_DIR]`).

The repository root is the include path, so a file protos/x.proto becomes the module ``protos.x_pb2`` and the
generated gRPC module imports it as ``from protos import x_pb2``: the stubs work as a package without edits.
With OUT_DIR the stubs land in OUT_DIR/protos/ (the staleness test compares those with the checked-in ones).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out_root: Path = ROOT) -> list[Path]:
    """Run grpc_tools.protoc on every .proto; return the generated files (under ``out_root/protos``)."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/struct.proto
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "protos").mkdir(exist_ok=True)
    protos = [str(p.relative_to(ROOT)) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"--proto_path={ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(protos)} (its message is above)")
    stems = [Path(p).stem for p in protos]
    return [out_root / "protos" / f"{s}{suffix}" for s in stems for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]


def main(argv: list[str]) -> int:
    out = Path(argv[0]).resolve() if argv else ROOT
    for f in generate(out):
        print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
