#!/usr/bin/env python3
"""Lints and renders a Helm chart with Helm's own Go library, and checks every rendered
Kubernetes object against the Kubernetes API schemas.

Helm comes from PyPI `helm-python-sdk` (Helm v4's Go SDK behind a C ABI: real template
functions, whitespace control, `fail`, `lookup` answering empty as under `helm template`),
the schemas from PyPI `kubernetes-validate` (the OpenAPI schemas of each Kubernetes release,
in their strict form that refuses unknown fields). No cluster and no network.

Reads one JSON request on stdin:

    {"chart": DIR, "name": "vouch", "namespace": "vouch-system",
     "kubeVersions": ["1.30", ...],
     "lint": [VALUES, ...],        # helm lint (strict) with each values object
     "render": [VALUES, ...]}      # helm template with each values object

and writes one JSON answer on stdout:

    {"lint": [{"errors": [...], "messages": [{"severity", "path", "error"}]}, ...],
     "render": [{"error": null | "why Helm refused",
                 "files": {TEMPLATE: TEXT},
                 "objects": [{"file", "apiVersion", "kind", "name",
                              "kubernetes": {VERSION: "ok" | "no-schema" | "invalid: ..."}}]},
                ...]}

`objects` lists the documents of each rendered file in order, empty documents left out, so
that a caller parsing the same texts can pair them. The exit status is 0 whenever an answer
was written; a broken request or a missing library exits 2 with the reason on stderr.
"""

import functools
import json
import sys


def validate(obj, versions, kubernetes_validate):
    """The outcome of each Kubernetes version's strict schema for one object."""
    out = {}
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            out[version] = "ok"
        except kubernetes_validate.SchemaNotFoundError:
            out[version] = "no-schema"
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            out[version] = f"invalid: {path}: {e.message}"
    return out


def main():
    try:
        import helm_python
        import kubernetes_validate
        import kubernetes_validate.utils
        import yaml
    except ImportError as e:
        sys.exit(f"render.py: {e} (pip install helm-python-sdk kubernetes-validate)")
    # kubernetes-validate reads a schema file and the release's definitions (megabytes of
    # JSON) on every call; they never change within a run.
    utils = kubernetes_validate.utils
    utils.schema_contents = functools.lru_cache(maxsize=None)(utils.schema_contents)
    request = json.load(sys.stdin)
    chart_dir = request["chart"]
    name = request.get("name", "vouch")
    namespace = request.get("namespace", "vouch-system")
    versions = request.get("kubeVersions", ["1.30"])

    answer = {"lint": [], "render": []}
    for values in request.get("lint", []):
        report = helm_python.lint(chart_dir, values, strict=True, namespace=namespace)
        answer["lint"].append(
            {"errors": report.get("errors") or [], "messages": report.get("messages") or []}
        )

    chart = helm_python.Chart.load(chart_dir)
    try:
        for values in request.get("render", []):
            try:
                files = chart.render(values, name=name, namespace=namespace)
            except helm_python.HelmError as e:
                answer["render"].append({"error": str(e), "files": {}, "objects": []})
                continue
            objects = []
            for path in sorted(files):
                if not path.endswith((".yaml", ".yml")):
                    continue
                for doc in yaml.safe_load_all(files[path]):
                    if doc is None:
                        continue
                    meta = doc.get("metadata") or {}
                    objects.append(
                        {
                            "file": path,
                            "apiVersion": doc.get("apiVersion"),
                            "kind": doc.get("kind"),
                            "name": meta.get("name"),
                            "kubernetes": validate(doc, versions, kubernetes_validate),
                        }
                    )
            answer["render"].append({"error": None, "files": files, "objects": objects})
    finally:
        chart.close()
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
