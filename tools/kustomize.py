"""Renders deploy/kubernetes as `kubectl kustomize` would, for machines without kubectl.

It understands what the base uses and nothing more: `resources` (files of YAML
documents) and `labels` (added to every object's metadata and, with
`includeSelectors`, to the selectors and pod templates of the kinds kustomize
adds them to). Any other key is refused with its name, so the base cannot grow a
feature this renderer would silently skip.

    .venv/bin/python tools/kustomize.py [deploy/kubernetes]    # prints the YAML
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "labels"}
# kind -> the paths kustomize puts selector labels on (its commonLabels field specs).
SELECTOR_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "StatefulSet": (
        ("spec", "selector", "matchLabels"),
        ("spec", "template", "metadata", "labels"),
    ),
    "Deployment": (
        ("spec", "selector", "matchLabels"),
        ("spec", "template", "metadata", "labels"),
    ),
    "Service": (("spec", "selector"),),
    "PodDisruptionBudget": (("spec", "selector", "matchLabels"),),
}


class KustomizeError(ValueError):
    pass


def _labels_at(document: dict[str, Any], path: tuple[str, ...]) -> dict[str, str]:
    node = document
    for key in path:
        node = node.setdefault(key, {})
    return node


def render(directory: Path) -> list[dict[str, Any]]:
    """Every object the kustomization makes, in resource order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED_KEYS
    if unknown:
        raise KustomizeError(
            f"{directory}/kustomization.yaml: {', '.join(sorted(unknown))} not supported by"
            " tools/kustomize.py (it knows resources and labels)"
        )
    objects: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        for document in yaml.safe_load_all((directory / resource).read_text()):
            if document is not None:
                objects.append(document)
    for entry in kustomization.get("labels", []):
        pairs = {str(k): str(v) for k, v in entry["pairs"].items()}
        for document in objects:
            document.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            if entry.get("includeSelectors"):
                for path in SELECTOR_PATHS.get(document["kind"], ()):
                    _labels_at(document, path).update(pairs)
                for template in document.get("spec", {}).get("volumeClaimTemplates", []):
                    template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    return objects


def main(argv: list[str]) -> int:
    directory = Path(argv[1] if len(argv) > 1 else "deploy/kubernetes")
    try:
        objects = render(directory)
    except (OSError, KustomizeError, yaml.YAMLError) as error:
        print(f"kustomize: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
