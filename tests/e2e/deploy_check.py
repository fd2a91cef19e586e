"""Checks of the deployment files that need no Docker engine and no cluster.

  deploy_check.py chart CASE RENDERED.yaml   key fields of a `helm template` output
  deploy_check.py deploy                     Dockerfile, compose file, plain manifests

Run from the repository root. The names apprd reads are taken from the source
(src/config.rs and string literals in src/), so a renamed setting fails here.
"""

import re
import sys
from pathlib import Path

import yaml

ROOT = Path.cwd()


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


# ---- what apprd reads -------------------------------------------------------

def config_env_names():
    """The settings' environment names, from clap's `env = "..."` in config.rs."""
    names = re.findall(r'env = "([A-Z0-9_]+)"', (ROOT / "src/config.rs").read_text())
    check(len(names) >= 10, f"too few env names found in src/config.rs: {names}")
    return set(names)


def known_env_names():
    """Every environment name apprd (or its AWS/OTel libraries) reads."""
    names = config_env_names()
    for f in (ROOT / "src").rglob("*.rs"):
        names |= set(re.findall(r'"((?:APPRD|AWS|OTEL)_[A-Z0-9_]+)"', f.read_text()))
    # Read by the libraries or the C library, documented in config.rs / README.
    names |= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL", "TMPDIR"}
    return names


def default_port():
    m = re.search(r'listen: "[0-9.]+:([0-9]+)"', (ROOT / "src/config.rs").read_text())
    check(m, "default listen address not found in src/config.rs")
    return int(m.group(1))


def ops_paths():
    text = (ROOT / "src/ops/mod.rs").read_text()
    return set(re.findall(r'\.route\("(/[a-z]+)"', text))


def listen_port(value):
    return int(value.rsplit(":", 1)[1])


# ---- helpers over Kubernetes objects -----------------------------------------

def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs):
    out = {}
    for d in docs:
        check("apiVersion" in d and "kind" in d and d.get("metadata", {}).get("name"),
              f"object without apiVersion/kind/name: {d}")
        out.setdefault(d["kind"], []).append(d)
    return out


def one(kinds, kind):
    items = kinds.get(kind, [])
    check(len(items) == 1, f"expected one {kind}, found {len(items)}")
    return items[0]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_env_names(env, where):
    unknown = set(env) - known_env_names()
    check(not unknown, f"{where}: environment names apprd does not read: {sorted(unknown)}")


def check_pod(deploy, where, grace_margin=0):
    """Fields every apprd pod needs, whatever the storage."""
    spec = deploy["spec"]["template"]["spec"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    sel = deploy["spec"]["selector"]["matchLabels"]
    check(sel.items() <= labels.items(), f"{where}: selector {sel} does not match pod labels {labels}")
    (c,) = spec["containers"]
    env = env_of(c)
    check_env_names(env, where)
    port = listen_port(env["APPRD_LISTEN"]["value"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("http") == port == default_port(),
          f"{where}: containerPort {ports} vs APPRD_LISTEN {port} vs default {default_port()}")
    paths = ops_paths()
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        get = c[probe]["httpGet"]
        check(get["path"] == path and path in paths, f"{where}: {probe} path {get['path']} (apprd serves {paths})")
        check(get["port"] in ("http", port), f"{where}: {probe} port {get['port']}")
    psc, sc = spec["securityContext"], c["securityContext"]
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, f"{where}: pod may run as root: {psc}")
    check(sc.get("readOnlyRootFilesystem") is True, f"{where}: root filesystem is writable")
    check(sc.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation allowed")
    check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}: capabilities not dropped")
    check(c.get("resources", {}).get("requests"), f"{where}: no resource requests")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    check(mounts.get("/tmp") and env.get("TMPDIR", {}).get("value") == "/tmp",
          f"{where}: no writable /tmp for a read-only root")
    grace = int(env["APPRD_SHUTDOWN_GRACE_SECS"]["value"])
    check(spec["terminationGracePeriodSeconds"] >= grace + grace_margin,
          f"{where}: terminationGracePeriodSeconds {spec['terminationGracePeriodSeconds']} < apprd grace {grace}")
    return spec, c, env, mounts


def check_service(svc, deploy, where):
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    check(svc["spec"]["selector"].items() <= labels.items(), f"{where}: Service selects no apprd pod")
    (p,) = svc["spec"]["ports"]
    check(p["targetPort"] == "http" and p["name"] == "http", f"{where}: Service port {p}")


# ---- chart ---------------------------------------------------------------------

def chart(case, path):
    kinds = by_kind(load_docs(path))
    where = f"chart[{case}]"
    deploy = one(kinds, "Deployment")
    spec, c, env, mounts = check_pod(deploy, where, grace_margin=5)
    check_service(one(kinds, "Service"), deploy, where)
    sa = one(kinds, "ServiceAccount")
    check(spec["serviceAccountName"] == sa["metadata"]["name"], f"{where}: service account not used")
    storage = env["STORAGE"]["value"]
    replicas = deploy["spec"]["replicas"]
    volumes = {v["name"]: v for v in spec["volumes"]}

    if storage == "filesystem":
        check(replicas == 1, f"{where}: filesystem with {replicas} replicas")
        check(deploy["spec"]["strategy"]["type"] == "Recreate", f"{where}: RWO volume needs Recreate")
        pvc = one(kinds, "PersistentVolumeClaim")
        claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
        check(claim == pvc["metadata"]["name"], f"{where}: pod claims {claim}, chart makes {pvc['metadata']['name']}")
        check(mounts.get(env["APPRD_ROOT"]["value"]) == "data", f"{where}: APPRD_ROOT is not the data volume")
        check(not any(k.startswith("APPRD_S3_") or k.startswith("AWS_") for k in env), f"{where}: S3 env on filesystem")
    elif storage == "s3":
        check("PersistentVolumeClaim" not in kinds and "data" not in volumes, f"{where}: a volume with s3 storage")
        check(deploy["spec"]["strategy"]["type"] == "RollingUpdate", f"{where}: s3 should roll")
        check(env["APPRD_S3_BUCKET"]["value"], f"{where}: no bucket")
        static = "AWS_ACCESS_KEY_ID" in env
        if case == "s3":
            check(replicas == 3, f"{where}: replicas {replicas}")
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                ref = env[k].get("valueFrom", {}).get("secretKeyRef", {})
                check(ref.get("name") == "apprd-s3" and "value" not in env[k], f"{where}: {k} not from the Secret: {env[k]}")
            check(env["AWS_ENDPOINT_URL"]["value"].startswith("http"), f"{where}: endpoint")
            check(env["APPRD_S3_PATH_STYLE"]["value"] == "true", f"{where}: path style")
            check(env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"].endswith(":4318"), f"{where}: OTLP endpoint")
        if case == "s3-pod-identity":
            check(not static, f"{where}: static credentials with pod identity")
            check("eks.amazonaws.com/role-arn" in sa["metadata"].get("annotations", {}), f"{where}: no IRSA annotation")
    else:
        fail(f"{where}: storage {storage}")

    if "PodDisruptionBudget" in kinds:
        pdb = one(kinds, "PodDisruptionBudget")
        check(pdb["spec"]["selector"]["matchLabels"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items(),
              f"{where}: PDB selects no apprd pod")
        check(("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]), f"{where}: PDB needs exactly one bound")
    if "ServiceMonitor" in kinds:
        sm = one(kinds, "ServiceMonitor")
        (ep,) = sm["spec"]["endpoints"]
        check(ep["port"] == "http" and ep["path"] == "/metrics" and "/metrics" in ops_paths(), f"{where}: ServiceMonitor {ep}")
        svc = one(kinds, "Service")
        check(sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(),
              f"{where}: ServiceMonitor selects no Service")
    if "Ingress" in kinds:
        ing = one(kinds, "Ingress")
        backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        check(backend["name"] == one(kinds, "Service")["metadata"]["name"] and backend["port"]["name"] == "http",
              f"{where}: Ingress backend {backend}")

    expected = {
        "filesystem-defaults": {"ServiceAccount", "PersistentVolumeClaim", "Service", "Deployment"},
        "filesystem": {"ServiceAccount", "PersistentVolumeClaim", "Service", "Deployment", "Ingress", "ServiceMonitor"},
        "s3": {"ServiceAccount", "Service", "Deployment", "PodDisruptionBudget", "ServiceMonitor"},
        "s3-pod-identity": {"ServiceAccount", "Service", "Deployment", "PodDisruptionBudget"},
    }[case]
    check(set(kinds) == expected, f"{where}: kinds {sorted(kinds)} != {sorted(expected)}")
    if case == "filesystem":
        check(c["lifecycle"]["preStop"]["sleep"]["seconds"] == 5, f"{where}: preStop sleep")
        check(spec["terminationGracePeriodSeconds"] == 30 + 5 + 5, f"{where}: grace with preStop")
    print(f"chart {case}: ok ({', '.join(sorted(kinds))})")


def chart_env_coverage(*paths):
    """Across the rendered cases the chart sets every setting apprd has (but the file)."""
    seen = set()
    for p in paths:
        for d in load_docs(p):
            if d["kind"] == "Deployment":
                seen |= set(env_of(d["spec"]["template"]["spec"]["containers"][0]))
    missing = config_env_names() - {"APPRD_CONFIG"} - seen
    check(not missing, f"the chart never sets {sorted(missing)}")
    print("chart env coverage: ok")


# ---- Dockerfile, compose, plain manifests --------------------------------------

def dockerfile():
    path = ROOT / "deploy/Dockerfile"
    lines = []
    for raw in path.read_text().replace("\\\n", " ").splitlines():
        raw = raw.strip()
        if raw and not raw.startswith("#"):
            lines.append(raw)
    instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]
    known = {"FROM", "WORKDIR", "COPY", "RUN", "USER", "ENV", "EXPOSE", "VOLUME", "ENTRYPOINT", "CMD", "ARG", "LABEL"}
    check(all(i in known for i, _ in instr), f"Dockerfile: unknown instruction in {[i for i, _ in instr]}")
    froms = [i for i, (k, _) in enumerate(instr) if k == "FROM"]
    check(len(froms) >= 2, "Dockerfile is not multi-stage")
    build_image = instr[froms[0]][1].split()[0]
    m = re.match(r"rust:(\d+)\.(\d+)", build_image)
    msrv = re.search(r'rust-version = "(\d+)\.(\d+)', (ROOT / "Cargo.toml").read_text())
    check(m and msrv and (int(m[1]), int(m[2])) >= (int(msrv[1]), int(msrv[2])),
          f"Dockerfile builder {build_image} older than rust-version")
    check(re.search(r'name = "apprd"', (ROOT / "Cargo.toml").read_text()) and "--bin apprd" in " ".join(a for _, a in instr),
          "Dockerfile does not build the apprd binary")
    # The image copies only src/: a target declared elsewhere would break the build.
    paths = re.findall(r'^path = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    check(all(p.startswith("src/") for p in paths), f"Cargo.toml targets outside src/: {paths}")
    check(not (ROOT / "build.rs").exists(), "build.rs is not copied into the image")
    final = instr[froms[-1]:]
    user = [a for k, a in final if k == "USER"]
    check(user and user[-1].split(":")[0] not in ("0", "root"), f"runtime image runs as root: {user}")
    copies = [a for k, a in final if k == "COPY"]
    check(all("--from=" in a for a in copies), f"runtime stage copies from the build context: {copies}")
    entry = [a for k, a in final if k == "ENTRYPOINT"][-1]
    binary = yaml.safe_load(entry)[0]
    check(any(a.split()[-1] == binary for a in copies), f"ENTRYPOINT {binary} is not the copied binary")
    env = dict(re.findall(r"([A-Z_]+)=(\S+)", " ".join(a for k, a in final if k == "ENV")))
    check_env_names(env, "Dockerfile")
    exposed = [int(a.split("/")[0]) for k, a in final if k == "EXPOSE"]
    check(exposed == [listen_port(env["APPRD_LISTEN"])] == [default_port()], f"Dockerfile: EXPOSE {exposed} vs APPRD_LISTEN")
    volume = yaml.safe_load([a for k, a in final if k == "VOLUME"][-1])
    check(volume == [env["APPRD_ROOT"]], f"Dockerfile: VOLUME {volume} is not APPRD_ROOT {env['APPRD_ROOT']}")
    # What the build stage copies from the context exists and is not ignored.
    ignore = (ROOT / "deploy/Dockerfile.dockerignore").read_text().split()
    for k, a in instr[: froms[-1]]:
        if k == "COPY" and "--from=" not in a:
            for src in a.split()[:-1]:
                check((ROOT / src).exists(), f"Dockerfile copies missing {src}")
                check(f"!{src.rstrip('/')}" in [i.rstrip("/") for i in ignore], f"{src} is excluded by Dockerfile.dockerignore")
    print("Dockerfile: ok")


def compose():
    doc = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    services = doc["services"]
    app = services["apprd"]
    env = {k: str(v) for k, v in app["environment"].items()}
    check_env_names(env, "compose")
    check(env["STORAGE"] == "s3" and env["APPRD_S3_BUCKET"], "compose: apprd is not on S3")
    port = listen_port(env["APPRD_LISTEN"])
    published = [p.rsplit(":", 1)[1] for p in app["ports"]]
    check(str(port) in published and port == default_port(), f"compose: ports {app['ports']} vs APPRD_LISTEN {port}")
    build = app["build"]
    check((ROOT / "deploy" / build["context"] / build["dockerfile"]).resolve() == (ROOT / "deploy/Dockerfile").resolve(),
          f"compose: build {build}")
    # apprd reaches the store by its service name and port.
    store = env["AWS_ENDPOINT_URL"]
    m = re.match(r"http://([a-z0-9-]+):(\d+)$", store)
    check(m and m[1] in services and app.get("depends_on") and m[1] in app["depends_on"], f"compose: endpoint {store}")
    s3 = services[m[1]]
    check(s3["environment"]["GARAGE_DEFAULT_BUCKET"] == env["APPRD_S3_BUCKET"], "compose: bucket not created by the store")
    check(s3["environment"]["GARAGE_DEFAULT_ACCESS_KEY"] == env["AWS_ACCESS_KEY_ID"], "compose: access key mismatch")
    check(s3["environment"]["GARAGE_DEFAULT_SECRET_KEY"] == env["AWS_SECRET_ACCESS_KEY"], "compose: secret key mismatch")
    conf = ROOT / "deploy" / s3["volumes"][0].split(":")[0]
    garage = conf.read_text()
    check(f'api_bind_addr = "[::]:{m[2]}"' in garage, "compose: store port differs from its config")
    check(f's3_region = "{env["AWS_REGION"]}"' in garage, "compose: region differs from the store's")
    check(app.get("read_only") is True and "/tmp" in app.get("tmpfs", []), "compose: root filesystem not read-only")
    print("compose.yaml: ok")


def cargo_version():
    m = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    check(m, "no version in Cargo.toml")
    return m.group(1)


def versions():
    """The chart and the manifests ship the apprd version being built."""
    chart_meta = yaml.safe_load((ROOT / "charts/apprd/Chart.yaml").read_text())
    check(chart_meta["appVersion"] == cargo_version(),
          f"Chart appVersion {chart_meta['appVersion']} != Cargo version {cargo_version()}")
    print("versions: ok")


def manifests():
    path = ROOT / "deploy/kubernetes/apprd.yaml"
    kinds = by_kind(load_docs(path))
    deploy = one(kinds, "Deployment")
    image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
    check(image.endswith(":" + cargo_version()), f"manifests: image {image} is not version {cargo_version()}")
    spec, c, env, mounts = check_pod(deploy, "kubernetes/apprd.yaml")
    check_service(one(kinds, "Service"), deploy, "kubernetes/apprd.yaml")
    pvc = one(kinds, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in spec["volumes"]}
    check(volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"], "manifests: claim name")
    check(mounts.get(env["APPRD_ROOT"]["value"]) == "data", "manifests: APPRD_ROOT is not the data volume")
    check(deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate", "manifests: replicas/strategy")
    check(spec["serviceAccountName"] == one(kinds, "ServiceAccount")["metadata"]["name"], "manifests: service account")
    print("kubernetes/apprd.yaml: ok")


def main():
    if sys.argv[1:2] == ["chart"]:
        chart(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["coverage"]:
        chart_env_coverage(*sys.argv[2:])
    elif sys.argv[1:] == ["deploy"]:
        dockerfile()
        compose()
        manifests()
        versions()
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
