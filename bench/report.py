#!/usr/bin/env python3
"""Turn bench/run.sh's raw measurements (one JSON object per line) into one
markdown table per storage: the median of each row for each system, its
min-max spread, the ratio apprd/peer, and whether apprd meets the goal.

Goals (issue 6): every throughput row at least the best peer's; manifest
requests per second at least 3x Distribution's; memory under half of
Distribution's; blob push and pull within 70% of the machine's limits.
"""
import argparse
import collections
import json
import os
import platform
import re
import statistics
import subprocess

PEERS = ["distribution", "docker-registry", "appr-reference"]
NAMES = {
    "apprd": "apprd",
    "distribution": "Distribution v3",
    "docker-registry": "docker-registry 2.8",
    "appr-reference": "appr 0.7.4 (reference)",
}


def higher_is_better(row):
    return row.endswith("/s)")


def fmt(v):
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(values):
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(values))}–{fmt(max(values))})"


def goal(row, data, pages=None):
    """'met', 'short' or '' for a row, from medians. `pages`: for a listing
    row, the pages each system answered in."""
    apprd = data.get("apprd")
    if not apprd or row.endswith("(pages)"):
        return ""
    a = statistics.median(apprd)
    peers = {p: statistics.median(v) for p, v in data.items() if p != "apprd" and v}
    if pages and pages.get("apprd", 1) > 1:
        # A peer that ignores `n` answers in one page: not the same walk.
        peers = {p: v for p, v in peers.items() if pages.get(p, 2) > 1}
    if not peers:
        return ""
    if "RSS" in row:
        d = peers.get("distribution")
        if d is None:
            return "met" if all(a <= v for v in peers.values()) else "short"
        return "met" if a <= d / 2 else "short"
    if row.startswith("manifest") and "(req/s)" in row and "distribution" in peers:
        return "met" if a >= 3 * peers["distribution"] and a >= max(peers.values()) else "short"
    if higher_is_better(row):
        return "met" if a >= max(peers.values()) else "short"
    if row.startswith("startup") or "(ms)" in row:
        return "met" if a <= min(peers.values()) else "short"
    return ""


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // (1024 * 1024)
    except OSError:
        mem = "?"
    fs = subprocess.run(["df", "-T", "/tmp"], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
    return f"{os.cpu_count()} × {model}, {mem} GiB RAM, Linux {platform.release()}, /tmp on {fs}"


def best_of(limits, names):
    """The best of the limit rows `names` that were measured, or None."""
    return max((limits[n] for n in names if limits.get(n)), default=None)


def in_place_rows(storage, push_row):
    """The machine rows of the plain writes made where `push_row`'s push
    writes (bench/run.sh in_place_limits): on the filesystem through the page
    cache and past it, the better of which is the limit."""
    m = re.match(r"push (\d+) MiB (monolithic|chunked)", push_row)
    if not m:
        return []
    whats = ["S3 PUT object"] if storage == "s3" else ["disk write + fdatasync", "disk write, O_DIRECT + fdatasync"]
    return [f"{what}, {m[1]} MiB in the {m[2]} push's place (MiB/s)" for what in whats]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--out", required=True)
    # A partial run (WORKLOADS=...) can be completed from an earlier full one:
    # rows this run did not measure are taken from it, marked, and named.
    ap.add_argument("--earlier", action="append", default=[],
                    help="raw lines of an earlier run (repeatable: a later file's rows replace an earlier's)")
    ap.add_argument("--earlier-apprd", default="?", help="the apprd commit(s) of those runs")
    for opt in ["apprd", "runs", "pulls", "load-seconds", "cpus", "distribution", "docker-registry", "garage"]:
        ap.add_argument("--" + opt, default="?")
    args = ap.parse_args()

    def load(path):
        rows = collections.OrderedDict()  # (storage, row) -> system -> [values]
        for line in open(path):
            m = json.loads(line)
            rows.setdefault((m["storage"], m["row"]), collections.defaultdict(list))[m["system"]].append(float(m["value"]))
        return rows

    rows = load(args.raw)
    before = collections.OrderedDict()
    for path in args.earlier:
        before.update(load(path))
    earlier = {key for key in before if key not in rows}
    # In the earlier runs' order, so the tables read as before; this run's rows
    # win, and a row new to this run follows the row it followed here.
    merged = [(key, rows.get(key, data)) for key, data in before.items()]
    previous = None
    for key, data in rows.items():
        if key not in before:
            at = next((i + 1 for i, (k, _) in enumerate(merged) if k == previous), len(merged))
            merged.insert(at, (key, data))
        previous = key
    rows = collections.OrderedDict(merged)

    def titled(st, row):
        """A row's name, marked when it comes from an earlier run."""
        return f"{row} †" if (st, row) in earlier else row

    limits = {row: statistics.median(v["limit"]) for (s, row), v in rows.items() if s == "machine"}
    header = [
        f"apprd {args.apprd}; Distribution {args.distribution}; docker-registry {args.docker_registry}; "
        f"Garage {args.garage}; appr 0.7.4 reference server (gunicorn, 1 worker).",
        f"Machine: {machine()}. CPUs pinned with taskset: {args.cpus} (Garage shares the client's).",
        f"Each cell: median of {args.runs} runs (min–max); pulls: {args.pulls} per run. "
        f"Manifest load: {args.load_seconds} s per run. "
        "Ratio = apprd / peer: above 1 is better for rows in …/s, below 1 for ms, µs and MiB rows.",
        "Goal: throughput at least the best peer's, manifest req/s at least 3× Distribution's, "
        "RSS under half of Distribution's, startup and list times at most the best peer's "
        "(lists: among peers that paginate; docker-registry 2.8 ignores `n` on tags/list).",
    ]
    if earlier:
        header.append(f"Rows marked † were not measured in this run: they come from an earlier "
                      f"run of every system ({args.earlier_apprd}).")
    os.makedirs(args.out, exist_ok=True)
    storages = [s for s in dict.fromkeys(s for s, _ in rows) if s != "machine"]
    for storage in storages:
        systems = [s for s in ["apprd"] + PEERS if any(s in v for (st, _), v in rows.items() if st == storage)]
        peers = [s for s in systems if s != "apprd"]
        out = [f"# apprd benchmark: {storage} storage", ""] + [h + "  " for h in header] + [""]
        out.append("| row | " + " | ".join(NAMES[s] for s in systems) + " | " +
                   " | ".join(f"apprd / {NAMES[p]}" for p in peers) + " | goal |")
        out.append("|---|" + "---:|" * (len(systems) + len(peers)) + "---|")
        for (st, row), data in rows.items():
            if st != storage:
                continue
            cells = [cell(data.get(s, [])) for s in systems]
            ratios = []
            for p in peers:
                if data.get("apprd") and data.get(p):
                    ratios.append(f"{statistics.median(data['apprd']) / statistics.median(data[p]):.2f}")
                else:
                    ratios.append("–")
            # Page counts are the server's API, not its storage: a run that
            # has none for a system borrows its filesystem ones.
            pages = None
            if row.endswith("(ms)"):
                pages = {}
                for where in ("filesystem", st):
                    for p, v in rows.get((where, row.replace("(ms)", "(pages)")), {}).items():
                        pages[p] = statistics.median(v)
                pages = pages or None
            out.append(f"| {titled(st, row)} | " + " | ".join(cells) + " | " + " | ".join(ratios) + f" | {goal(row, data, pages)} |")
        out += ["", "## The machine's limits, and apprd against them", "",
                "| limit | median | apprd row | apprd | apprd / limit |", "|---|---:|---|---:|---:|"]
        sha = limits.get("SHA-256, one core (MiB/s)")
        loopback = limits.get("loopback HTTP GET by sendfile (MiB/s)")
        if storage == "s3":
            write = limits.get("S3 PUT object, Garage (MiB/s)")
            read = limits.get("S3 GET object, Garage (MiB/s)")
            wname, rname = "S3 PUT", "S3 GET"
        else:
            # The disk's best sequential write, through the page cache or past it.
            write = best_of(limits, ("disk write + fdatasync (MiB/s)",
                                     "disk write, O_DIRECT + fdatasync (MiB/s)"))
            read = limits.get("read, page cache (MiB/s)")
            wname, rname = "disk write", "page-cache read"
        for (st, row), data in rows.items():
            blob_row = row.startswith(("push", "pull")) and row.endswith("(MiB/s)")
            if st != storage or not data.get("apprd") or not blob_row:
                continue
            a = statistics.median(data["apprd"])
            if row.startswith("push") and sha and write:
                # A push must hash and store every byte. A plain tool on one
                # core does one then the other (the serial figures); a push
                # that writes past the page cache (apprd on a filesystem)
                # leaves the disk working beside the hash and can pass them,
                # but never min(SHA-256, write).
                serials = [(f"SHA-256 then {wname}, one core", write)]
                here = best_of(limits, in_place_rows(storage, row))
                if here:
                    serials.append((f"SHA-256 then {wname} in the push's place, one core", here))
                out.append(f"| min(SHA-256, {wname}) | {fmt(min(sha, write))} MiB/s | {row} | {fmt(a)} | {a / min(sha, write):.2f} |")
                for name, w in serials:
                    serial = 1 / (1 / sha + 1 / w)
                    out.append(f"| {name} | {fmt(serial)} MiB/s | {row} | {fmt(a)} | {a / serial:.2f} |")
            elif row.startswith("pull") and read:
                out.append(f"| {rname} | {fmt(read)} MiB/s | {row} | {fmt(a)} | {a / read:.2f} |")
                if loopback and storage != "s3":
                    # Every byte pulled also crosses loopback TCP to the client.
                    best = min(read, loopback)
                    out.append(f"| min({rname}, loopback sendfile) | {fmt(best)} MiB/s | {row} | {fmt(a)} | {a / best:.2f} |")
        out += ["", "| machine row | median (min–max) |", "|---|---:|"]
        for (st, row), data in rows.items():
            if st == "machine":
                out.append(f"| {titled(st, row)} | {cell(data['limit'])} |")
        path = os.path.join(args.out, f"{storage}.md")
        with open(path, "w") as f:
            f.write("\n".join(out) + "\n")
        print(path)


if __name__ == "__main__":
    main()
