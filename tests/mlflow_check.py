"""Reads back what a sonora run sent to an MLflow tracking server, with MLflow's own client.

    python3 tests/mlflow_check.py URI RUN_ID [METRIC]

Prints JSON: status, params, latest metrics, tags, the history (step, value) of METRIC, and
every artifact path (recursive).
"""
import json
import sys

from mlflow.tracking import MlflowClient


def artifacts(client, run_id, path=None):
    out = []
    for f in client.list_artifacts(run_id, path):
        if f.is_dir:
            out.extend(artifacts(client, run_id, f.path))
        else:
            out.append(f.path)
    return out


def main():
    uri, run_id = sys.argv[1], sys.argv[2]
    metric = sys.argv[3] if len(sys.argv) > 3 else None
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    exp = client.get_experiment(run.info.experiment_id)
    history = []
    if metric:
        history = [[m.step, m.value] for m in client.get_metric_history(run_id, metric)]
        history.sort()
    print(json.dumps({
        "status": run.info.status,
        "experiment": exp.name,
        "run_name": run.info.run_name,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": dict(run.data.tags),
        "history": history,
        "artifacts": sorted(artifacts(client, run_id)),
    }))


if __name__ == "__main__":
    main()
