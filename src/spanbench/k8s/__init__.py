"""``spanbench k8s render``: the manifests of one run on Kubernetes.

``scenario_text`` turns a scenario file into the ConfigMap's text (validated, without the
keys the manifests own), ``manifests`` builds the objects as plain dicts, and ``render``
writes them as YAML. Nothing here talks to a cluster.
"""
