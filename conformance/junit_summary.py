#!/usr/bin/env python3
"""Summarise a conformance junit.xml: list every skipped and failed test with
its reason; exit 1 on any failure or error, or when nothing ran.
Understands both suites: Ginkgo's <skipped>/<failure> elements and the
redesigned suite's status="skipped|failed|error" attributes."""
import sys
import xml.etree.ElementTree as ET

path, label = sys.argv[1], sys.argv[2]
total = failed = skipped = 0
for case in ET.parse(path).getroot().iter("testcase"):
    total += 1
    status = (case.get("status") or "").lower()
    name = case.get("name")
    if case.find("failure") is not None or case.find("error") is not None or status in ("failed", "error"):
        failed += 1
        print("  FAIL", name)
    elif case.find("skipped") is not None or status == "skipped":
        skipped += 1
        el = case.find("skipped")
        reason = (el.get("message") if el is not None else None) or (case.findtext("system-err") or "")
        print("  skip", name, "-", " ".join(reason.split())[:200])
print(f"{label}: {total} tests, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or total == 0 else 0)
