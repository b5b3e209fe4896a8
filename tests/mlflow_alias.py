"""Reads a registered model's alias back with MLflow's own client.

    python3 tests/mlflow_alias.py URI NAME ALIAS

Prints JSON: the version the alias points to, its source, run id and tags, and how many
versions the model has.
"""
import json
import sys

from mlflow.tracking import MlflowClient


def main():
    uri, name, alias = sys.argv[1:4]
    client = MlflowClient(tracking_uri=uri)
    mv = client.get_model_version_by_alias(name, alias)
    versions = client.search_model_versions(f"name='{name}'")
    files = [f.path for f in client.list_artifacts(mv.run_id, "checkpoint")]
    print(json.dumps({
        "version": int(mv.version),
        "source": mv.source,
        "run_id": mv.run_id,
        "tags": dict(mv.tags),
        "versions": len(versions),
        "files": sorted(files),
    }))


if __name__ == "__main__":
    main()
