"""GCS mode against fake-gcs-server on loopback: uploads, every asset and both exports in buckets."""

import base64
import io

import dagster as dg
import numpy as np
import pyarrow.parquet as pq

from keystroke_assets.definitions import defs
from keystroke_assets.export import export_kvc, load_typenet_sequences
from keystroke_assets.synthetic import web_app_uploads

from .conftest import SEGMENTED, VERSION, failed_rules_of, materialize_version, stored

EVERY_ASSET = [k.to_user_string() for k in defs.resolve_asset_graph().toposorted_asset_keys]


def test_every_asset_and_both_exports_in_gcs(instance, gcs_bucket, monkeypatch, tmp_path):
    for name, data in web_app_uploads(4, seed=5, broken_every=0):
        gcs_bucket.blob(f"uploads/{name}").upload_from_string(data)
    gcs_bucket.blob("uploads/f_" + "a" * 32 + "_0.csv.gstmp").upload_from_string(b"P,a,1")
    env = {
        "KEYSTROKE_UPLOADS": f"gs://{gcs_bucket.name}/uploads",
        "KEYSTROKE_STORAGE": f"gs://{gcs_bucket.name}/datasets",
    }
    result = materialize_version(instance, env)
    assert result.success and failed_rules_of(result) == []

    assert {"features/kvc", "features/typenet_sequences", "features/statistical"} <= set(EVERY_ASSET)
    tables = {}
    for key in EVERY_ASSET:
        table = stored(env["KEYSTROKE_STORAGE"], key)
        md = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key)).asset_materialization.metadata
        stored_as = "segments.json" if key in SEGMENTED else "parquet"
        assert md["path"].value == f"gs://{gcs_bucket.name}/datasets/{key}/{VERSION}.{stored_as}"
        assert md["dagster/row_count"].value == len(table) > 0
        tables[key] = table

    manifest = pq.read_table(
        io.BytesIO(gcs_bucket.blob(f"datasets/web_app_data/{VERSION}.parquet").download_as_bytes())
    ).to_pandas()
    csv = manifest[manifest["kind"] == "keystrokes"].iloc[0]
    upload = gcs_bucket.get_blob(f"uploads/{csv['name']}")
    # the manifest names the object with GCS's own checksum and generation
    assert csv["md5"] == base64.b64decode(upload.md5_hash).hex()
    assert csv["generation"] == str(upload.generation) and csv["crc32c"]
    pack, span = csv["kept_as"].rsplit("@", 1)
    offset, size = map(int, span.split(":"))
    kept = gcs_bucket.blob(f"datasets/{pack}").download_as_bytes()[offset : offset + size]
    assert kept == upload.download_as_bytes()
    assert tables["keypairs"]["user_id"].nunique() == 4

    # the exports read the store of the environment: here the bucket
    monkeypatch.setenv("KEYSTROKE_STORAGE", env["KEYSTROKE_STORAGE"])
    x, ids = load_typenet_sequences(VERSION)
    sequences = tables["features/typenet_sequences"]
    assert x.dtype == np.float32 and x.shape[0] == len(ids) == len(sequences)
    assert ids["user_id"].tolist() == sequences["user_id"].tolist()
    paths = export_kvc(VERSION, tmp_path / "kvc")
    kvc = np.load(paths["all"], allow_pickle=True).item()
    keystrokes = tables["features/kvc"]
    assert set(kvc) == set(keystrokes["user_id"])
    assert sum(len(a) for tasks in kvc.values() for a in tasks.values()) == len(keystrokes)
