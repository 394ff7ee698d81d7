#!/usr/bin/python3
"""Validates every manifest under deploy/ and proves the validation can fail.

  - Kubernetes objects (Deployment, Service, HorizontalPodAutoscaler, ConfigMap) against the
    Kubernetes JSON schemas of the kubernetes-validate package (strict: unknown fields are errors).
  - KServe ServingRuntime and InferenceService against deploy/schemas/kserve-*.schema.json, whose
    Kubernetes types (Container, Toleration, ...) resolve to the same Kubernetes schemas.
  - The Prometheus Adapter's rules (the config.yaml inside its ConfigMap) against
    deploy/schemas/prometheus-adapter-rules.schema.json, and that the metric they serve is the one the
    HPA scales on and one sluice_serve exports.
  - Every fixture in tests/deploy/fixtures/broken-*.yaml must be rejected (each breaks one rule).
  - The Dockerfiles run deploy/build-server.sh, the script this test is handed by --built-with.

Run by ctest (tests/deploy/CMakeLists.txt) inside a virtual environment it makes with pip:
  validate_manifests.py --venv DIR [--built-with deploy/build-server.sh]
The first run creates DIR and installs kubernetes-validate, jsonschema and PyYAML from PyPI into it.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import venv

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
KUBERNETES_VERSION = "1.30"
PACKAGES = ["kubernetes-validate==1.37.0", "jsonschema>=4.18", "PyYAML>=6"]


def ensure_venv(path):
    """Re-runs this script inside the virtual environment at `path`, made and filled on first use."""
    python = os.path.join(path, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(path):
        return
    stamp = os.path.join(path, "sluice-packages.txt")
    if not (os.path.exists(stamp) and open(stamp).read() == "\n".join(PACKAGES)):
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
        pip = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check"] + PACKAGES)
        if pip.returncode != 0:
            print("skipped: pip could not install %s (no PyPI here?)" % " ".join(PACKAGES))
            sys.exit(77)
        open(stamp, "w").write("\n".join(PACKAGES))
    os.execv(python, [python] + sys.argv)


class Validator:
    def __init__(self):
        import importlib.resources
        import jsonschema
        import referencing
        import yaml
        self.jsonschema, self.yaml = jsonschema, yaml
        import kubernetes_validate
        self.kv = kubernetes_validate
        # The Kubernetes definitions the KServe schemas reference, from the same package.
        version = [v for v in kubernetes_validate.utils.all_versions() if v.startswith(KUBERNETES_VERSION)][-1]
        defs_path = importlib.resources.files("kubernetes_validate").joinpath(
            "kubernetes-json-schema/v%s-local-strict/_definitions.json" % version)
        defs = json.loads(defs_path.read_text())
        # Registered under its own $id too: its internal references resolve against that.
        resource = referencing.Resource.from_contents(defs)
        self.registry = referencing.Registry().with_resources(
            [("urn:kubernetes-definitions", resource), (defs.get("$id", "urn:kubernetes-definitions"), resource)])
        self.schemas = {}
        for kind, name in (("ServingRuntime", "kserve-servingruntime"), ("InferenceService", "kserve-inferenceservice")):
            self.schemas[kind] = json.load(open(os.path.join(DEPLOY, "schemas", name + ".schema.json")))
        self.adapter_schema = json.load(open(os.path.join(DEPLOY, "schemas", "prometheus-adapter-rules.schema.json")))

    def problems(self, doc):
        """The validation errors of one manifest document (empty: valid)."""
        kind = doc.get("kind") if isinstance(doc, dict) else None
        errors = []
        if kind in self.schemas:
            v = self.jsonschema.Draft202012Validator(self.schemas[kind], registry=self.registry)
            errors += ["%s: %s" % ("/".join(map(str, e.absolute_path)), e.message[:300]) for e in v.iter_errors(doc)]
        else:
            try:
                self.kv.validate(doc, KUBERNETES_VERSION, strict=True)
            except self.kv.utils.ValidationError as e:
                errors.append("%s: %s" % ("/".join(map(str, e.path)), e.message[:300]))
            except self.kv.utils.SchemaNotFoundError as e:
                errors.append("no schema: " + e.message)
        if kind == "ConfigMap" and "config.yaml" in doc.get("data", {}):
            rules = self.yaml.safe_load(doc["data"]["config.yaml"])
            v = self.jsonschema.Draft202012Validator(self.adapter_schema)
            errors += ["config.yaml/%s: %s" % ("/".join(map(str, e.absolute_path)), e.message[:300])
                       for e in v.iter_errors(rules)]
        return errors

    def load(self, path):
        return [d for d in self.yaml.safe_load_all(open(path)) if d]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--venv", required=True)
    ap.add_argument("--built-with", default="", help="the build script the test ran (deploy/build-server.sh)")
    a = ap.parse_args()
    ensure_venv(os.path.abspath(a.venv))

    v = Validator()
    failures = []
    manifests = sorted(glob.glob(os.path.join(DEPLOY, "kubernetes", "*.yaml")) +
                       glob.glob(os.path.join(DEPLOY, "kserve", "*.yaml")))
    docs = {}
    for path in manifests:
        for doc in v.load(path):
            name = "%s %s/%s" % (os.path.relpath(path, ROOT), doc.get("kind"), doc.get("metadata", {}).get("name"))
            docs[name] = doc
            errs = v.problems(doc)
            print(("FAIL " if errs else "ok   ") + name + "".join("\n       " + e for e in errs))
            if errs:
                failures.append(name)
    kinds = {d["kind"] for d in docs.values()}
    for needed in ("Deployment", "Service", "HorizontalPodAutoscaler", "ServingRuntime", "InferenceService", "ConfigMap"):
        if needed not in kinds:
            failures.append("no %s among the manifests" % needed)

    # Each broken fixture breaks one rule and must be rejected.
    fixtures = sorted(glob.glob(os.path.join(HERE, "fixtures", "broken-*.yaml")))
    if len(fixtures) < 3:
        failures.append("expected at least 3 broken fixtures, found %d" % len(fixtures))
    for path in fixtures:
        for doc in v.load(path):
            errs = v.problems(doc)
            print(("ok   rejected " if errs else "FAIL accepted ") + os.path.relpath(path, ROOT) +
                  (": " + errs[0] if errs else ""))
            if not errs:
                failures.append(path + " was accepted")

    # The autoscaling chain: the HPA's metric is what the adapter serves, which is what the server exports.
    hpa = next(d for d in docs.values() if d["kind"] == "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    adapter = next(d for d in docs.values() if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {}))
    rules = v.yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    if not any(r.get("name", {}).get("as") == metric and metric in r["seriesQuery"] for r in rules):
        failures.append("no adapter rule serves the HPA's metric " + metric)
    metrics_source = open(os.path.join(ROOT, "include", "sluice", "batching", "metrics.hpp")).read()
    if '"%s"' % metric not in metrics_source:
        failures.append("sluice does not export the HPA's metric %s (include/sluice/batching/metrics.hpp)" % metric)
    # The probes are the Open Inference Protocol's health endpoints.
    for name, d in docs.items():
        if d["kind"] != "Deployment":
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        for probe, path in (("livenessProbe", "/v2/health/live"), ("readinessProbe", "/v2/health/ready"),
                            ("startupProbe", "/v2/health/ready")):
            if c.get(probe, {}).get("httpGet", {}).get("path") != path:
                failures.append("%s: %s is not GET %s" % (name, probe, path))

    # The images are built by the script this test ran.
    for dockerfile in ("Dockerfile", "Dockerfile.cuda"):
        text = open(os.path.join(DEPLOY, dockerfile)).read()
        runs = re.findall(r"^RUN\s+(deploy/build-server\.sh\b.*)$", text, re.M)
        if len(runs) != 1:
            failures.append("deploy/%s does not RUN deploy/build-server.sh exactly once" % dockerfile)
        if not re.search(r"^FROM debian:12 AS build$|^FROM nvidia/cuda:\S+-cudnn-devel-\S+ AS build$", text, re.M):
            failures.append("deploy/%s: unexpected build stage base" % dockerfile)
    if a.built_with and os.path.realpath(a.built_with) != os.path.realpath(os.path.join(DEPLOY, "build-server.sh")):
        failures.append("the test built with %s, the Dockerfiles with deploy/build-server.sh" % a.built_with)

    if failures:
        print("\n%d problem(s):\n  " % len(failures) + "\n  ".join(failures))
        return 1
    print("\nall %d manifests valid, %d broken fixtures rejected" % (len(docs), len(fixtures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
