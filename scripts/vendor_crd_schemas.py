"""Vendor the OpenAPI schemas of the custom resources deploy/k8s uses, for the
offline manifest tests (tests/unit/deploy/crd_schemas/).

The tests cannot reach a cluster or the network, so the published
CustomResourceDefinitions are reduced to what validation needs (each served
version's openAPIV3Schema) and stored gzipped: the InferenceService CRD alone is
2 MB of YAML. Rerun this when a newer KServe or prometheus-operator is targeted:

    python scripts/vendor_crd_schemas.py \\
        serving.kserve.io_inferenceservices.yaml serving.kserve.io_servingruntimes.yaml \\
        monitoring.coreos.com_podmonitors.yaml

(the CRDs are kserve's config/crd/full/ and prometheus-operator's
example/prometheus-operator-crd/), then update the provenance table in
tests/unit/deploy/crd_schemas/README.md (which commit of each project).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[1] / "tests" / "unit" / "deploy" / "crd_schemas"


def schema_file_name(group: str, version: str, kind: str) -> str:
    """The file the tests look a resource's schema up by: its apiVersion and kind."""
    return f"{group}_{version}_{kind}.json.gz"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("crds", nargs="+", type=Path, help="CustomResourceDefinition YAML files")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.crds:
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            target = args.out / schema_file_name(spec["group"], version["name"], spec["names"]["kind"])
            text = json.dumps(version["schema"]["openAPIV3Schema"], separators=(",", ":"), sort_keys=True)
            # mtime=0: the same CRD gives the same bytes, so a rerun shows no spurious diff.
            target.write_bytes(gzip.compress(text.encode(), mtime=0))
            print(f"{path.name} -> {target.name} ({len(text) // 1024} KiB of schema)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
