#!/usr/bin/env python3
"""Write an OCI image layout with a single-platform image (tag "single") and a
two-platform index (tag "multi"), from random bytes, for client round trips.
Usage: make_oci_layout.py DIR"""
import gzip, hashlib, io, json, os, sys, tarfile

out = sys.argv[1]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)


def blob(data: bytes) -> dict:
    d = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{d}", "size": len(data)}


def layer(name: str, payload: bytes) -> tuple[dict, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mtime = 0
        t.addfile(info, io.BytesIO(payload))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    gz = gzip.compress(raw.getvalue(), mtime=0)
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(gz)}, diff_id


def image(arch: str) -> dict:
    lay, diff_id = layer(f"hello-{arch}.txt", os.urandom(200_000))
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "config": {"Cmd": ["/hello"]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
        "layers": [lay],
    }).encode()
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(manifest),
            "platform": {"architecture": arch, "os": "linux"}}


single = image("amd64")
index = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [image("amd64"), image("arm64")],
}).encode()
multi = {"mediaType": "application/vnd.oci.image.index.v1+json", **blob(index)}
single.pop("platform")
single["annotations"] = {"org.opencontainers.image.ref.name": "single"}
multi["annotations"] = {"org.opencontainers.image.ref.name": "multi"}
with open(f"{out}/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [single, multi]}, f)
with open(f"{out}/oci-layout", "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
print(single["digest"], multi["digest"])
