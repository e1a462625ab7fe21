"""GCS mode against fake-gcs-server on loopback: uploads and outputs in buckets."""

import base64
import io

import dagster as dg
import pyarrow.parquet as pq

from keystroke_assets.synthetic import web_app_uploads

from .conftest import VERSION, failed_rules_of, materialize_version
from .test_pipeline import CHAIN, CHAIN_KEYS


def test_chain_in_gcs(instance, gcs_bucket):
    for name, data in web_app_uploads(4, seed=5, broken_every=0):
        gcs_bucket.blob(f"uploads/{name}").upload_from_string(data)
    gcs_bucket.blob("uploads/f_" + "a" * 32 + "_0.csv.gstmp").upload_from_string(b"P,a,1")
    env = {"KEYSTROKE_UPLOADS": f"gs://{gcs_bucket.name}/uploads", "KEYSTROKE_STORAGE": f"gs://{gcs_bucket.name}/datasets"}
    result = materialize_version(instance, env, selection=CHAIN_KEYS)
    assert result.success and failed_rules_of(result) == []

    for key in CHAIN:
        blob = gcs_bucket.blob(f"datasets/{key}/{VERSION}.parquet")
        table = pq.read_table(io.BytesIO(blob.download_as_bytes()))
        md = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key)).asset_materialization.metadata
        assert md["path"].value == f"gs://{gcs_bucket.name}/datasets/{key}/{VERSION}.parquet"
        assert md["dagster/row_count"].value == table.num_rows > 0

    manifest = pq.read_table(io.BytesIO(gcs_bucket.blob(f"datasets/web_app_data/{VERSION}.parquet").download_as_bytes())).to_pandas()
    csv = manifest[manifest["kind"] == "keystrokes"].iloc[0]
    upload = gcs_bucket.get_blob(f"uploads/{csv['name']}")
    # the manifest names the object with GCS's own checksum and generation
    assert csv["md5"] == base64.b64decode(upload.md5_hash).hex()
    assert csv["generation"] == str(upload.generation) and csv["crc32c"]
    pack, span = csv["kept_as"].rsplit("@", 1)
    offset, size = map(int, span.split(":"))
    kept = gcs_bucket.blob(f"datasets/{pack}").download_as_bytes()[offset: offset + size]
    assert kept == upload.download_as_bytes()
    pairs = pq.read_table(io.BytesIO(gcs_bucket.blob(f"datasets/keypairs/{VERSION}.parquet").download_as_bytes())).to_pandas()
    assert pairs["user_id"].nunique() == 4
