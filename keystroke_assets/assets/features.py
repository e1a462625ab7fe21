"""features/<name> for every feature type declared in keystroke_assets.features: a per-participant
feature (`Feature(..., compute=fn)`) is computed and stored per participant segment of what it
reads by the segment engine; the module that declares it holds no Dagster."""

import inspect
from functools import partial
from types import ModuleType

import dagster as dg
import pandas as pd
import pydantic

from keystroke_assets import engine
from keystroke_assets.assets.common import as_metadata, check_specs, run_checks, version_asset, version_multi_asset
from keystroke_assets.engine import Output, Read, Stage
from keystroke_assets.features.common import Feature, FromWholeVersion, Partial, PartialSegment
from keystroke_assets.lib.declared import declared
from keystroke_assets.lib.segments import SegmentList
from keystroke_assets.resources.parquet_io_manager import read_segment

SEGMENTS = dg.PythonObjectDagsterType(SegmentList)


def feature_facts(own, df: pd.DataFrame) -> dict:
    """What every feature's segment reports: its participants and rows per grain, then its own."""
    facts = {"participants": int(df["user_id"].nunique())}
    if "grain" in df:
        facts["grains"] = {str(g): int(n) for g, n in df["grain"].value_counts(sort=False).items()}
    return {**facts, **(own(df) if own else {})}


def feature_counts(facts: list[dict]) -> dict:
    counts = {"participants": sum(f["participants"] for f in facts)}
    for f in facts:
        for grain, n in f.get("grains", {}).items():
            counts[f"rows/{grain}"] = counts.get(f"rows/{grain}", 0) + n
    return counts


def stage_of(feature: Feature) -> Stage:
    """The segment engine's stage of a per-participant feature."""
    return Stage(
        feature.compute,
        outputs=(Output(dg.AssetKey(feature.key_path), feature.all_checks, partial(feature_facts, feature.facts)),),
        code_version=feature.code_version,
        reads=(Read(dg.AssetKey(feature.reads)),),
        uploads=feature.uploads,
    )


def _config_schema(name: str, config: type[pydantic.BaseModel] | None):
    """The Dagster config schema of a feature's config model (Dagster-free in its module)."""
    if config is None:
        return None
    fields = {field: (f.annotation, f.default) for field, f in config.model_fields.items()}
    title = "".join(part.title() for part in name.replace("/", "_").split("_")) + "Config"
    return pydantic.create_model(title, __base__=dg.Config, **fields).to_fields_dict()


def feature_asset(feature: Feature) -> dg.AssetsDefinition:
    """The asset of a per-participant feature: its segments through the segment engine, then its
    output (the segment list), metadata and one blocking check."""
    stage = stage_of(feature)
    key = dg.AssetKey(feature.key_path)
    ins = {feature.reads: dg.AssetIn(dg.AssetKey(feature.reads), dagster_type=SEGMENTS)}
    if feature.uploads:  # the snapshot's manifest: where the participants' uploads are kept
        ins["web_app_data"] = dg.AssetIn(dg.AssetKey("web_app_data"))

    @version_asset(
        key=key,
        ins=ins,
        group_name="features",
        check_specs=check_specs(key, feature.all_checks),
        code_version=feature.code_version,
        description=feature.description,
        metadata=dict(feature.labels),
        kinds=set(feature.kinds),
        config_schema=_config_schema(feature.name, feature.config),
        required_resource_keys={"storage", "segment_executor"},
    )
    def _feature(context: dg.AssetExecutionContext, **inputs):
        params = feature.params(context.op_execution_context.op_config)

        def metadata(facts: list[dict]) -> dict:
            return {**feature_counts(facts), **as_metadata(feature.metadata(facts, params) if feature.metadata else {})}

        yield from engine.materialize(
            context,
            stage,
            params,
            engine.plan(stage, {feature.reads: inputs[feature.reads]}, inputs.get("web_app_data")),
            context.resources.storage,
            context.resources.segment_executor,
            metadata={key: metadata},
        )

    return _feature


class EngineParts:
    """Parts of one step: each Partial run by the segment engine over the version's segments, its
    lists stored beside the tables, its segment counts kept for the step's metadata."""

    def __init__(self, context, made: FromWholeVersion, sources: dict[str, SegmentList]):
        self._context, self._made, self._sources = context, made, sources
        self.counts: dict[str, int] = {}

    def compute(self, part: Partial, **params) -> dict[str, list[PartialSegment]]:
        if part not in self._made.partials:  # the step reads only what its declared partials read
            raise ValueError(f"{part.name} is not one of the partials {self._made.name} declares")
        outputs = part.outputs or (part.name,)
        keys = {o: dg.AssetKey(["features", self._made.name, "partials", o]) for o in outputs}
        stage = Stage(
            part.compute,
            outputs=tuple(Output(keys[o], table=part.table) for o in outputs),
            code_version=self._made.code_version,
            reads=tuple(Read(dg.AssetKey(r), part.columns.get(r)) for r in part.reads),
        )
        storage = self._context.resources.storage
        run = engine.run_for_version(
            self._context,
            stage,
            params,
            engine.plan(stage, {r: self._sources[r] for r in part.reads}),
            storage,
            self._context.resources.segment_executor,
        )
        self.counts.update({f"{part.name}/{k}": v for k, v in run.counts().items()})
        return {
            o: [
                PartialSegment(s.get("facts", {}), s["rows"], partial(read_segment, storage, entry))
                for s, entry in zip((job[keys[o]] for job in run.summaries), run.segment_list(keys[o]).segments)
            ]
            for o in outputs
        }


def whole_version_asset(made: FromWholeVersion) -> dg.AssetsDefinition:
    """One step making the feature types of `made`, each one object per version, from partial
    results per segment (EngineParts); subsettable: it stores only the selected features."""
    reads = sorted({r for p in made.partials for r in p.reads})
    needs_thresholds = "thresholds" in inspect.signature(made.combine).parameters
    names = {f.name: "__".join(f.name.split("/")) for f in made.features}

    @version_multi_asset(
        {
            names[f.name]: dict(
                key=dg.AssetKey(f.key_path),
                group_name="features",
                code_version=made.code_version,
                description=f.description,
                metadata=dict(f.labels),
                kinds=set(f.kinds),
            )
            for f in made.features
        },
        name="features__" + made.name,
        ins={r: dg.AssetIn(dg.AssetKey(r), dagster_type=SEGMENTS) for r in reads},
        check_specs=[spec for f in made.features for spec in check_specs(f.key_path, f.all_checks)],
        config_schema=_config_schema(made.name, made.config),
        required_resource_keys={"storage", "segment_executor", *(["outlier_rules"] if needs_thresholds else [])},
    )
    def _made(context: dg.AssetExecutionContext, **inputs):
        params = made.params(context.op_execution_context.op_config)
        if needs_thresholds:
            params["thresholds"] = context.resources.outlier_rules.as_params()
        parts = EngineParts(context, made, inputs)
        tables = made.combine(parts, **params)
        for feature in made.features:
            key = dg.AssetKey(feature.key_path)
            if key not in context.selected_asset_keys:
                continue
            df, metadata = tables[feature.name]
            yield dg.Output(
                df,
                output_name=names[feature.name],
                metadata={**feature_counts([feature_facts(None, df)]), **parts.counts, **as_metadata(metadata)},
            )
            yield from run_checks(df, feature.all_checks, key)

    return _made


def declared_features(package: ModuleType) -> list[Feature]:
    """Every Feature declared in the package's modules, by name (the first of a name)."""
    found = {f.name: f for f in reversed(declared(package)) if isinstance(f, Feature)}
    return [found[name] for name in sorted(found)]


def feature_assets(package: ModuleType) -> list[dg.AssetsDefinition]:
    """An asset per per-participant feature declared in the package, a step per FromWholeVersion."""
    return [
        *(feature_asset(f) for f in declared_features(package) if f.compute is not None),
        *(whole_version_asset(m) for m in declared(package) if isinstance(m, FromWholeVersion)),
    ]
