"""Reads a sonora dataset with pyarrow, polars, DuckDB and Hugging Face `datasets`,
and prints one JSON object of what each library saw (the Rust test asserts on it)."""
import glob
import json
import os
import sys

import duckdb
import polars as pl
import pyarrow.parquet as pq

root = sys.argv[1]
manifest = json.load(open(os.path.join(root, "manifest.json")))
files = sorted(os.path.join(root, s["path"]) for s in manifest["shards"])
out = {"files": len(files)}

# pyarrow: schema, key-value metadata, struct media columns, nested physics labels
t = pq.read_table(files)
md = pq.read_metadata(files[0]).metadata or {}
out["pyarrow"] = {
    "rows": t.num_rows,
    "schema_version": md.get(b"sonora.schema_version", b"").decode(),
    "video_type": str(t.schema.field("video").type),
    "first_video_len": len(t.column("video")[0]["bytes"].as_py()),
    "first_video_head": t.column("video")[0]["bytes"].as_py()[4:8].decode("latin1"),
    "clip_ids": sorted(t.column("clip_id").to_pylist()),
    "gravity": t.column("physics")[0]["gravity"].as_py() if "physics" in t.column_names else None,
}

# polars: lazy scan with projection, list column
df = pl.scan_parquet(files).select(["clip_id", "num_frames", "tags"]).collect()
out["polars"] = {
    "rows": df.height,
    "frames_sum": int(df["num_frames"].sum()),
    "tags_first": df["tags"][0].to_list(),
}

# DuckDB: SQL over the shards, struct field access
con = duckdb.connect()
pattern = os.path.join(root, "*.parquet")
rows, vbytes = con.execute(
    f"SELECT count(*), sum(octet_length(video.bytes)) FROM read_parquet('{pattern}')"
).fetchone()
out["duckdb"] = {"rows": rows, "video_bytes": int(vbytes)}

# Hugging Face datasets: the parquet builder with the shards as they are
from datasets import load_dataset

ds = load_dataset("parquet", data_files=files, split="train")
out["datasets"] = {
    "rows": len(ds),
    "video_keys": sorted(ds.features["video"].keys()),
    "first_caption": ds[0]["caption"],
    "first_audio_head": ds[0]["audio"]["bytes"][:4].decode("latin1"),
}
print(json.dumps(out))
